//! NUMA topology from the firmware's ACPI tables: the SRAT (which memory and which CPUs
//! belong to which proximity domain) and the SLIT (how far each domain is from the others).
//!
//! Why it is here: every ACPI machine (x86_64, and aarch64 servers) describes its nodes
//! this way, and a porting kernel should not have to learn the byte layouts to give the
//! memory model its [`NumaRange`]s and distances. The parser works on the tables' bytes
//! (the kernel finds them however it likes, e.g. with the `acpi` crate, and hands over a
//! slice), needs no allocation, and never trusts them: a bad checksum, a truncated entry,
//! an entry whose length disagrees with its type, or a distance table that breaks ACPI's
//! rules (10 on the diagonal, more than 10 elsewhere) is an error the caller turns into
//! "one node" with a log line, as Linux does (`acpi_numa_init`, `slit_valid`); bad tables
//! never stop a boot.
//!
//! Node ids: ACPI names domains by 32-bit proximity numbers that need not be small or
//! dense. As Linux's `acpi_map_pxm_to_node`, a [`PxmMap`] hands out node ids 0, 1, 2, ...
//! in the order domains are first seen (memory entries first, then processors), up to
//! [`MAX_NUMNODES`].

#![deny(unsafe_code)]

use core::fmt;

use crate::model::mmzone::MAX_NUMNODES;
pub use crate::model::node::{LOCAL_DISTANCE, REMOTE_DISTANCE};
use crate::model::node::{NumaRange, first_bad_distance};

/// Length of the standard ACPI table header.
const HEADER_LEN: usize = 36;
/// The SRAT's fixed part: the header, 4 reserved bytes (table revision 1), 8 reserved.
const SRAT_ENTRIES_AT: usize = HEADER_LEN + 12;
/// The SLIT's fixed part: the header and the 8-byte number of localities.
const SLIT_MATRIX_AT: usize = HEADER_LEN + 8;

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiTableError {
    /// Shorter than its fixed part, or than the length its header states.
    Truncated {
        /// The table's signature.
        signature: [u8; 4],
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        len: usize,
    },
    /// Not the table asked for.
    Signature {
        /// The signature wanted.
        expected: [u8; 4],
        /// The one found.
        found: [u8; 4],
    },
    /// The bytes of the table do not sum to 0 modulo 256.
    Checksum([u8; 4]),
    /// An SRAT entry at this offset is shorter than 2 bytes, runs past the table's end, or
    /// is too short for its type.
    BadEntry {
        /// Byte offset of the entry in the table.
        offset: usize,
        /// Its type.
        kind: u8,
        /// Its stated length.
        len: u8,
    },
    /// A SLIT distance breaks ACPI's rules: `from == to` must be 10, others above 10.
    BadDistance {
        /// Row (locality).
        from: usize,
        /// Column.
        to: usize,
        /// The value found.
        value: u8,
    },
    /// More proximity domains than [`MAX_NUMNODES`].
    TooManyDomains {
        /// The first domain that found no node id.
        pxm: u32,
    },
}

impl fmt::Display for AcpiTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn sig(s: &[u8; 4]) -> &str {
            core::str::from_utf8(s).unwrap_or("????")
        }
        match self {
            AcpiTableError::Truncated {
                signature,
                needed,
                len,
            } => write!(
                f,
                "{}: truncated: {len} bytes, {needed} needed",
                sig(signature)
            ),
            AcpiTableError::Signature { expected, found } => write!(
                f,
                "expected an {} table, found signature {:?}",
                sig(expected),
                found
            ),
            AcpiTableError::Checksum(s) => write!(f, "{}: bad checksum", sig(s)),
            AcpiTableError::BadEntry { offset, kind, len } => write!(
                f,
                "SRAT: entry of type {kind} at offset {offset} has a bad length {len}"
            ),
            AcpiTableError::BadDistance { from, to, value } => write!(
                f,
                "SLIT: distance {from}->{to} is {value} (10 on the diagonal, above 10 elsewhere)"
            ),
            AcpiTableError::TooManyDomains { pxm } => write!(
                f,
                "SRAT: proximity domain {pxm} is one more than the {MAX_NUMNODES} nodes supported"
            ),
        }
    }
}

impl core::error::Error for AcpiTableError {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// Check signature, stated length and checksum; the table's bytes (as long as its header
/// says: firmware may hand a larger mapping).
fn checked(table: &[u8], signature: [u8; 4], fixed: usize) -> Result<&[u8], AcpiTableError> {
    if table.len() < HEADER_LEN {
        return Err(AcpiTableError::Truncated {
            signature,
            needed: HEADER_LEN,
            len: table.len(),
        });
    }
    let found = [table[0], table[1], table[2], table[3]];
    if found != signature {
        return Err(AcpiTableError::Signature {
            expected: signature,
            found,
        });
    }
    let stated = u32_at(table, 4) as usize;
    let needed = stated.max(fixed);
    if table.len() < needed {
        return Err(AcpiTableError::Truncated {
            signature,
            needed,
            len: table.len(),
        });
    }
    let table = &table[..stated];
    if table.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
        return Err(AcpiTableError::Checksum(signature));
    }
    Ok(table)
}

/// One SRAT entry this parser understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SratEntry {
    /// Processor local APIC (type 0) or local x2APIC (type 2) affinity.
    Cpu {
        /// The CPU's (x2)APIC id.
        apic_id: u32,
        /// Its proximity domain.
        pxm: u32,
        /// Flag bit 0: the entry is in use (disabled ones are to be ignored).
        enabled: bool,
    },
    /// Memory affinity (type 1).
    Memory {
        /// First byte.
        start: u64,
        /// One past the last byte (saturating).
        end: u64,
        /// Its proximity domain.
        pxm: u32,
        /// Flag bit 0.
        enabled: bool,
        /// Flag bit 1: the range may be hot-removed (Linux puts it in ZONE_MOVABLE with
        /// `movable_node`).
        hotpluggable: bool,
        /// Flag bit 2: non-volatile memory.
        nonvolatile: bool,
    },
    /// Any other type (GICC, GIC ITS, generic initiator, ...): skipped.
    Other {
        /// Its type.
        kind: u8,
    },
}

/// A checked SRAT.
#[derive(Clone, Copy, Debug)]
pub struct Srat<'t> {
    table: &'t [u8],
}

impl<'t> Srat<'t> {
    /// Check the table (signature, length, checksum, and every entry's length).
    pub fn parse(table: &'t [u8]) -> Result<Srat<'t>, AcpiTableError> {
        let table = checked(table, *b"SRAT", SRAT_ENTRIES_AT)?;
        let srat = Srat { table };
        for e in srat.raw_entries() {
            e?;
        }
        Ok(srat)
    }

    /// The table's revision (header byte 8). Processor entries carry a 32-bit domain from
    /// revision 2 on; revision 1 tables only fill its low byte.
    pub fn revision(&self) -> u8 {
        self.table[8]
    }

    fn raw_entries(&self) -> impl Iterator<Item = Result<SratEntry, AcpiTableError>> + '_ {
        let t = self.table;
        let mut at = SRAT_ENTRIES_AT;
        let revision = self.revision();
        core::iter::from_fn(move || {
            if at >= t.len() {
                return None;
            }
            let offset = at;
            let kind = t[at];
            let len = if at + 1 < t.len() { t[at + 1] } else { 0 };
            let min = match kind {
                0 => 16,
                1 => 40,
                2 => 24,
                _ => 2,
            };
            if (len as usize) < min || at + len as usize > t.len() {
                at = t.len();
                return Some(Err(AcpiTableError::BadEntry { offset, kind, len }));
            }
            let e = &t[at..at + len as usize];
            at += len as usize;
            let flags_enabled = |f: u32| f & 1 != 0;
            Some(Ok(match kind {
                0 => {
                    let mut pxm = u32::from(e[2]);
                    if revision >= 2 {
                        pxm |=
                            u32::from(e[9]) << 8 | u32::from(e[10]) << 16 | u32::from(e[11]) << 24;
                    }
                    SratEntry::Cpu {
                        apic_id: u32::from(e[3]),
                        pxm,
                        enabled: flags_enabled(u32_at(e, 4)),
                    }
                }
                1 => {
                    let start = u64_at(e, 8);
                    let flags = u32_at(e, 28);
                    SratEntry::Memory {
                        start,
                        end: start.saturating_add(u64_at(e, 16)),
                        pxm: u32_at(e, 2),
                        enabled: flags_enabled(flags),
                        hotpluggable: flags & 2 != 0,
                        nonvolatile: flags & 4 != 0,
                    }
                }
                2 => SratEntry::Cpu {
                    apic_id: u32_at(e, 8),
                    pxm: u32_at(e, 4),
                    enabled: flags_enabled(u32_at(e, 12)),
                },
                kind => SratEntry::Other { kind },
            }))
        })
    }

    /// The entries, in table order (all checked by [`Srat::parse`]).
    pub fn entries(&self) -> impl Iterator<Item = SratEntry> + '_ {
        self.raw_entries().filter_map(Result::ok)
    }

    /// The enabled, non-empty memory ranges as [`NumaRange`]s, with node ids from `pxms`
    /// (call this before [`Srat::cpu_node`] so that domains with memory get the low ids,
    /// in table order), written to `out`. Returns how many were written; more ranges than
    /// `out` holds, or more domains than node ids, is an error.
    pub fn memory_ranges(
        &self,
        pxms: &mut PxmMap,
        out: &mut [NumaRange],
    ) -> Result<usize, MemoryRangesError> {
        let mut n = 0;
        for e in self.entries() {
            if let SratEntry::Memory {
                start,
                end,
                pxm,
                enabled: true,
                ..
            } = e
            {
                if start >= end {
                    continue;
                }
                let nid = pxms.node_for(pxm).map_err(MemoryRangesError::Table)?;
                let cap = out.len();
                let slot = out.get_mut(n).ok_or(MemoryRangesError::BufferFull(cap))?;
                *slot = NumaRange { start, end, nid };
                n += 1;
            }
        }
        Ok(n)
    }

    /// The node of the enabled CPU with (x2)APIC id `apic_id`, giving its domain an id in
    /// `pxms` if it is new (a CPU-only, memory-less node). None if the SRAT does not list
    /// that CPU.
    pub fn cpu_node(
        &self,
        apic_id: u32,
        pxms: &mut PxmMap,
    ) -> Option<Result<usize, AcpiTableError>> {
        self.entries().find_map(|e| match e {
            SratEntry::Cpu {
                apic_id: a,
                pxm,
                enabled: true,
            } if a == apic_id => Some(pxms.node_for(pxm)),
            _ => None,
        })
    }
}

/// Why [`Srat::memory_ranges`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryRangesError {
    /// More domains than node ids.
    Table(AcpiTableError),
    /// More ranges than the buffer (of this length) holds.
    BufferFull(usize),
}

impl fmt::Display for MemoryRangesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryRangesError::Table(e) => e.fmt(f),
            MemoryRangesError::BufferFull(n) => {
                write!(f, "SRAT: more than {n} memory affinity ranges")
            }
        }
    }
}

impl core::error::Error for MemoryRangesError {}

/// Proximity domain → node id, ids handed out in order of first use (Linux:
/// `acpi_map_pxm_to_node`).
#[derive(Clone, Debug)]
pub struct PxmMap {
    pxms: [u32; MAX_NUMNODES],
    len: usize,
}

impl Default for PxmMap {
    fn default() -> Self {
        PxmMap {
            pxms: [0; MAX_NUMNODES],
            len: 0,
        }
    }
}

impl PxmMap {
    /// An empty map.
    pub fn new() -> PxmMap {
        PxmMap::default()
    }

    /// The node of domain `pxm`, if it has one.
    pub fn node_of(&self, pxm: u32) -> Option<usize> {
        self.pxms[..self.len].iter().position(|&p| p == pxm)
    }

    /// The node of domain `pxm`, giving it the next id if it has none.
    pub fn node_for(&mut self, pxm: u32) -> Result<usize, AcpiTableError> {
        if let Some(nid) = self.node_of(pxm) {
            return Ok(nid);
        }
        if self.len == MAX_NUMNODES {
            return Err(AcpiTableError::TooManyDomains { pxm });
        }
        self.pxms[self.len] = pxm;
        self.len += 1;
        Ok(self.len - 1)
    }

    /// The domain of node `nid`.
    pub fn pxm_of(&self, nid: usize) -> Option<u32> {
        self.pxms[..self.len].get(nid).copied()
    }

    /// Node ids handed out (they are `0..nr_nodes()`).
    pub fn nr_nodes(&self) -> usize {
        self.len
    }
}

/// A checked SLIT: distances between localities (proximity domains), row-major.
#[derive(Clone, Copy, Debug)]
pub struct Slit<'t> {
    matrix: &'t [u8],
    localities: usize,
}

impl<'t> Slit<'t> {
    /// Check the table (signature, length, checksum) and every distance (Linux's
    /// `slit_valid`: 10 on the diagonal, above 10 elsewhere).
    pub fn parse(table: &'t [u8]) -> Result<Slit<'t>, AcpiTableError> {
        let table = checked(table, *b"SLIT", SLIT_MATRIX_AT)?;
        let localities = u64_at(table, HEADER_LEN);
        let needed = localities
            .checked_mul(localities)
            .and_then(|n| n.checked_add(SLIT_MATRIX_AT as u64))
            .filter(|&n| n <= table.len() as u64)
            .ok_or(AcpiTableError::Truncated {
                signature: *b"SLIT",
                needed: usize::MAX,
                len: table.len(),
            })? as usize;
        let localities = localities as usize;
        let matrix = &table[SLIT_MATRIX_AT..needed];
        if let Some((from, to, value)) = first_bad_distance(matrix, localities) {
            return Err(AcpiTableError::BadDistance { from, to, value });
        }
        Ok(Slit { matrix, localities })
    }

    /// Number of localities.
    pub fn localities(&self) -> usize {
        self.localities
    }

    /// Distance from domain `from` to domain `to` (None if either is beyond the table).
    pub fn distance(&self, from: u32, to: u32) -> Option<u8> {
        let (f, t) = (from as usize, to as usize);
        (f < self.localities && t < self.localities).then(|| self.matrix[f * self.localities + t])
    }

    /// Distance between nodes `a` and `b` through `pxms`; [`LOCAL_DISTANCE`] or
    /// [`REMOTE_DISTANCE`] when the table does not cover them (Linux's default).
    pub fn node_distance(&self, pxms: &PxmMap, a: usize, b: usize) -> u8 {
        match (pxms.pxm_of(a), pxms.pxm_of(b)) {
            (Some(pa), Some(pb)) => self.distance(pa, pb),
            _ => None,
        }
        .unwrap_or(if a == b {
            LOCAL_DISTANCE
        } else {
            REMOTE_DISTANCE
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.push(revision);
        t.push(0); // checksum, fixed below
        t.extend_from_slice(b"ZBUDDY");
        t.extend_from_slice(b"TESTTABL");
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(b"ZB  ");
        t.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(t.len(), HEADER_LEN);
        t.extend_from_slice(body);
        let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[9] = 0u8.wrapping_sub(sum);
        t
    }

    fn mem(start: u64, len: u64, pxm: u32, flags: u32) -> Vec<u8> {
        let mut e = std::vec![1u8, 40];
        e.extend_from_slice(&pxm.to_le_bytes());
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&start.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&[0; 8]);
        e
    }

    fn lapic(apic_id: u8, pxm: u32, enabled: bool) -> Vec<u8> {
        let p = pxm.to_le_bytes();
        let mut e = std::vec![0u8, 16, p[0], apic_id];
        e.extend_from_slice(&u32::from(enabled).to_le_bytes());
        e.extend_from_slice(&[0, p[1], p[2], p[3]]);
        e.extend_from_slice(&[0; 4]);
        e
    }

    fn x2apic(apic_id: u32, pxm: u32) -> Vec<u8> {
        let mut e = std::vec![2u8, 24, 0, 0];
        e.extend_from_slice(&pxm.to_le_bytes());
        e.extend_from_slice(&apic_id.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&[0; 8]);
        e
    }

    fn srat(revision: u8, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = std::vec![1, 0, 0, 0];
        body.extend_from_slice(&[0; 8]);
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"SRAT", revision, &body)
    }

    fn slit(n: u64, d: &[u8]) -> Vec<u8> {
        let mut body = n.to_le_bytes().to_vec();
        body.extend_from_slice(d);
        table(b"SLIT", 1, &body)
    }

    /// A two-socket machine as QEMU describes `-numa node,mem=2G,cpus=0-1 -numa
    /// node,mem=2G,cpus=2-3` with domains 7 and 3 (ids follow first appearance, not pxm).
    #[test]
    fn two_nodes_from_srat() {
        let t = srat(
            3,
            &[
                lapic(0, 7, true),
                lapic(1, 7, true),
                x2apic(2, 3),
                lapic(3, 3, true),
                lapic(4, 3, false),
                mem(0, 0xa0000, 7, 1),
                mem(0x100000, (2 << 30) - 0x100000, 7, 1),
                mem(2 << 30, 2 << 30, 3, 3),
                mem(8 << 30, 1 << 30, 9, 0), // disabled: ignored
            ],
        );
        let s = Srat::parse(&t).unwrap();
        let mut pxms = PxmMap::new();
        let mut out = [NumaRange {
            start: 0,
            end: 0,
            nid: 0,
        }; 8];
        let n = s.memory_ranges(&mut pxms, &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            out[1],
            NumaRange {
                start: 0x100000,
                end: 2 << 30,
                nid: 0
            }
        );
        assert_eq!(
            out[2],
            NumaRange {
                start: 2 << 30,
                end: 4 << 30,
                nid: 1
            }
        );
        assert_eq!(pxms.nr_nodes(), 2);
        assert_eq!(s.cpu_node(1, &mut pxms), Some(Ok(0)));
        assert_eq!(s.cpu_node(2, &mut pxms), Some(Ok(1)));
        assert_eq!(s.cpu_node(4, &mut pxms), None, "disabled entry");
        assert!(s.entries().any(|e| matches!(
            e,
            SratEntry::Memory {
                hotpluggable: true,
                pxm: 3,
                ..
            }
        )));
    }

    /// Revision 1 processor entries only have an 8-bit domain: the high bytes are not read.
    #[test]
    fn revision_one_reads_low_domain_byte() {
        let t = srat(1, &[lapic(0, 0x0102, true)]);
        let s = Srat::parse(&t).unwrap();
        assert!(s.entries().any(|e| e
            == SratEntry::Cpu {
                apic_id: 0,
                pxm: 2,
                enabled: true
            }));
        let t = srat(2, &[lapic(0, 0x0102, true)]);
        let s = Srat::parse(&t).unwrap();
        assert!(s.entries().any(|e| e
            == SratEntry::Cpu {
                apic_id: 0,
                pxm: 0x0102,
                enabled: true
            }));
    }

    #[test]
    fn a_cpu_only_domain_gets_the_next_id() {
        let t = srat(
            3,
            &[lapic(0, 0, true), lapic(1, 5, true), mem(0, 1 << 30, 0, 1)],
        );
        let s = Srat::parse(&t).unwrap();
        let mut pxms = PxmMap::new();
        let mut out = [NumaRange {
            start: 0,
            end: 0,
            nid: 0,
        }; 4];
        assert_eq!(s.memory_ranges(&mut pxms, &mut out), Ok(1));
        assert_eq!(s.cpu_node(1, &mut pxms), Some(Ok(1)));
        assert_eq!(pxms.pxm_of(1), Some(5));
    }

    #[test]
    fn malformed_srat_is_refused() {
        let good = srat(3, &[mem(0, 1 << 30, 0, 1)]);
        let mut bad = good.clone();
        bad[60] ^= 1;
        assert_eq!(
            Srat::parse(&bad).unwrap_err(),
            AcpiTableError::Checksum(*b"SRAT")
        );
        assert!(matches!(
            Srat::parse(&good[..40]),
            Err(AcpiTableError::Truncated { .. })
        ));
        let mut sig = good.clone();
        sig[0] = b'X';
        assert!(matches!(
            Srat::parse(&sig),
            Err(AcpiTableError::Signature { .. })
        ));
        // A memory entry claiming 16 bytes.
        let mut short = mem(0, 1 << 30, 0, 1);
        short[1] = 16;
        short.truncate(16);
        assert_eq!(
            Srat::parse(&srat(3, &[short])).unwrap_err(),
            AcpiTableError::BadEntry {
                offset: SRAT_ENTRIES_AT,
                kind: 1,
                len: 16
            }
        );
        // A zero-length entry would loop forever if accepted.
        let zero = std::vec![7u8, 0, 0, 0];
        assert!(matches!(
            Srat::parse(&srat(3, &[zero])),
            Err(AcpiTableError::BadEntry { len: 0, .. })
        ));
        // Unknown entry types are skipped by their length.
        let other = std::vec![3u8, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let s = srat(3, &[other, mem(0, 1 << 30, 4, 1)]);
        let s = Srat::parse(&s).unwrap();
        assert_eq!(s.entries().count(), 2);
    }

    #[test]
    fn too_many_domains_and_full_buffer() {
        let entries: Vec<_> = (0..=MAX_NUMNODES as u64)
            .map(|i| mem(i << 30, 1 << 30, i as u32 * 3, 1))
            .collect();
        let t = srat(3, &entries);
        let s = Srat::parse(&t).unwrap();
        let mut out = std::vec![NumaRange { start: 0, end: 0, nid: 0 }; MAX_NUMNODES + 1];
        assert_eq!(
            s.memory_ranges(&mut PxmMap::new(), &mut out),
            Err(MemoryRangesError::Table(AcpiTableError::TooManyDomains {
                pxm: MAX_NUMNODES as u32 * 3
            }))
        );
        let mut small = [NumaRange {
            start: 0,
            end: 0,
            nid: 0,
        }; 2];
        assert_eq!(
            s.memory_ranges(&mut PxmMap::new(), &mut small),
            Err(MemoryRangesError::BufferFull(2))
        );
    }

    #[test]
    fn slit_distances_and_validation() {
        let t = slit(3, &[10, 20, 30, 20, 10, 25, 30, 25, 10]);
        let s = Slit::parse(&t).unwrap();
        assert_eq!(s.localities(), 3);
        assert_eq!(s.distance(0, 2), Some(30));
        assert_eq!(s.distance(2, 1), Some(25));
        assert_eq!(s.distance(3, 0), None);
        let mut pxms = PxmMap::new();
        pxms.node_for(2).unwrap();
        pxms.node_for(0).unwrap();
        assert_eq!(s.node_distance(&pxms, 0, 1), 30);
        assert_eq!(s.node_distance(&pxms, 1, 1), 10);
        assert_eq!(s.node_distance(&pxms, 0, 5), REMOTE_DISTANCE);
        assert_eq!(
            Slit::parse(&slit(2, &[10, 20, 20, 12])).unwrap_err(),
            AcpiTableError::BadDistance {
                from: 1,
                to: 1,
                value: 12
            }
        );
        assert_eq!(
            Slit::parse(&slit(2, &[10, 10, 20, 10])).unwrap_err(),
            AcpiTableError::BadDistance {
                from: 0,
                to: 1,
                value: 10
            }
        );
        assert!(matches!(
            Slit::parse(&slit(3, &[10, 20, 20, 10])),
            Err(AcpiTableError::Truncated { .. })
        ));
        assert!(matches!(
            Slit::parse(&slit(u64::MAX, &[])),
            Err(AcpiTableError::Truncated { .. })
        ));
    }
}

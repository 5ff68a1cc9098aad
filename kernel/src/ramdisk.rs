//! The boot ramdisk as the page cache's backing store.
//!
//! The bootloader loads the rdfs image ([`crate::rdfs`]) next to the kernel, maps it in
//! the kernel's half of the address space and reports where (`BootInfo::ramdisk_addr`,
//! `ramdisk_len`); its frames are `Bootloader` memory, which the allocator never hands
//! out, so the image stays intact for the kernel's whole life. This module validates the
//! image once at boot and serves its files to zonebuddy's page cache through the
//! [`Backing`] trait: a page-cache miss copies one page out of the image, exactly as a
//! block-device read would fill it. A malformed image is reported in one line and the
//! cache is left without a backing store: every read then fails with "no backing store",
//! nothing else changes.
//!
//! The image is read through its virtual mapping, never written.

use spin::Once;
use zonebuddy::reclaim::filemap::{Backing, BackingError};

use crate::rdfs::{self, Image, Kind};

/// The validated image.
pub struct Ramdisk {
    image: Image<'static>,
}

static RAMDISK: Once<Ramdisk> = Once::new();

/// Why there is no page cache.
static ABSENT: Once<&'static str> = Once::new();

impl Ramdisk {
    /// The image.
    pub fn image(&self) -> &Image<'static> {
        &self.image
    }

    /// File `file`'s name.
    pub fn name(&self, file: u32) -> Option<&'static str> {
        self.image.name(file)
    }

    /// Does `data`, `len` bytes of file `file` from byte `pos` on, match the image? For
    /// generated files this is checked against the generator (independent of the image's
    /// bytes); for text files against the image.
    pub fn matches(&self, file: u32, pos: u64, data: &[u8]) -> bool {
        let Some(e) = self.image.entry(file) else {
            return false;
        };
        if pos
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > e.size)
        {
            return false;
        }
        match e.kind {
            Kind::Generated => {
                let mut buf = [0u8; 256];
                data.chunks(buf.len()).enumerate().all(|(i, chunk)| {
                    let b = &mut buf[..chunk.len()];
                    rdfs::fill_generated(self.image.seed(), file, pos + (i * 256) as u64, b);
                    b == chunk
                })
            }
            Kind::Text => self
                .image
                .data(file)
                .is_some_and(|d| &d[pos as usize..pos as usize + data.len()] == data),
        }
    }
}

impl Backing for Ramdisk {
    fn nr_files(&self) -> u32 {
        self.image.nr_files()
    }

    fn file_size(&self, file: u32) -> Option<u64> {
        self.image.entry(file).map(|e| e.size)
    }

    fn read_page(&self, file: u32, index: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        let data = self.image.data(file).ok_or(BackingError::NoFile)?;
        let start = index
            .checked_mul(rdfs::PAGE)
            .filter(|&s| s < data.len() as u64)
            .ok_or(BackingError::Io)? as usize;
        let n = (data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(())
    }
}

/// Validate the ramdisk the bootloader loaded (if any) and give it to the page cache.
/// Called once, after the allocator is up.
pub fn init() {
    let facts = crate::boot_info::facts();
    let Some((addr, len)) = facts.ramdisk else {
        ABSENT.call_once(|| "no ramdisk (boot with --ramdisk)");
        return;
    };
    // SAFETY: the bootloader mapped the ramdisk at `addr` for `len` bytes in the kernel's
    // address space and reserved its frames (`Bootloader` memory, never allocated); the
    // kernel never unmaps the bootloader's mappings nor writes the image, so it is a
    // valid, immutable byte slice for the rest of the kernel's life.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    match Image::parse(bytes) {
        Ok(image) => {
            let r = RAMDISK.call_once(|| Ramdisk { image });
            kprintln!(
                "ramdisk: rdfs image at {addr:#x}, {} KiB, {} files; page cache backed by it",
                len / 1024,
                image.nr_files()
            );
            crate::memory::allocator().page_cache_set_backing(r);
        }
        Err(e) => {
            kprintln!("ramdisk: {len} bytes at {addr:#x} rejected: {e}; no page cache");
            ABSENT.call_once(|| "the ramdisk image was rejected at boot");
        }
    }
}

/// The ramdisk, if one was loaded and is valid.
pub fn get() -> Option<&'static Ramdisk> {
    RAMDISK.get()
}

/// Why [`get`] is `None` (for skipped tests and console errors).
pub fn absent_reason() -> &'static str {
    ABSENT.get().copied().unwrap_or("no ramdisk")
}

/// Most bytes `cat` prints of a text file (the serial line is slow under TCG).
pub const CAT_TEXT_LIMIT: u64 = 64 * 1024;

/// Read file `file` through the page cache into `f`, a page at a time, in order. Returns
/// the bytes read.
pub fn read_through_cache(
    file: u32,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), alloc::string::String>,
) -> Result<u64, alloc::string::String> {
    let a = crate::memory::allocator();
    let mut buf = [0u8; rdfs::PAGE as usize];
    let mut pos = 0u64;
    loop {
        let n = a
            .page_cache_read(file, pos, &mut buf)
            .map_err(|e| alloc::format!("{e}"))?;
        if n == 0 {
            return Ok(pos);
        }
        f(pos, &buf[..n])?;
        pos += n as u64;
    }
}

/// `cat /ramdisk/NAME`: a text file is printed (up to [`CAT_TEXT_LIMIT`] bytes); a
/// generated (binary) file is read whole through the page cache and summarised: its size,
/// checksum, and whether every byte matched the image.
pub fn cat(file: u32, out: &mut dyn core::fmt::Write) -> Result<(), alloc::string::String> {
    let r = get().ok_or_else(|| alloc::string::String::from(absent_reason()))?;
    let e = r
        .image()
        .entry(file)
        .ok_or_else(|| alloc::format!("no file {file}"))?;
    let io = |_| alloc::string::String::from("output error");
    match e.kind {
        Kind::Text => {
            read_through_cache(file, |pos, chunk| {
                if pos >= CAT_TEXT_LIMIT {
                    return Ok(());
                }
                let n = chunk.len().min((CAT_TEXT_LIMIT - pos) as usize);
                for &b in &chunk[..n] {
                    let c = if b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '.'
                    };
                    out.write_char(c).map_err(io)?;
                }
                Ok(())
            })?;
            if e.size > CAT_TEXT_LIMIT {
                writeln!(out, "\n[{} more bytes not shown]", e.size - CAT_TEXT_LIMIT)
                    .map_err(io)?;
            }
        }
        Kind::Generated => {
            let mut sum = rdfs::FNV_OFFSET;
            let mut bad = None;
            let start = crate::arch::time::now_ns();
            let n = read_through_cache(file, |pos, chunk| {
                sum = rdfs::fnv1a(sum, chunk);
                if bad.is_none() && !r.matches(file, pos, chunk) {
                    bad = Some(pos);
                }
                Ok(())
            })?;
            let us = ((crate::arch::time::now_ns() - start) / 1000).max(1);
            let verdict = match bad {
                None if sum == e.checksum && n == e.size => {
                    alloc::string::String::from("matches the image")
                }
                None => alloc::format!("checksum MISMATCH (table {:#018x})", e.checksum),
                Some(p) => alloc::format!("MISMATCH at byte {p}"),
            };
            writeln!(
                out,
                "<binary file {}: {n} bytes read through the page cache in {} ms ({} MiB/s), fnv1a64 {sum:#018x}, {verdict}>",
                e.name(),
                us / 1000,
                n * 1_000_000 / us / (1 << 20)
            )
            .map_err(io)?;
            if bad.is_some() || sum != e.checksum {
                return Err(alloc::format!("{}: read back wrong data", e.name()));
            }
        }
    }
    Ok(())
}

//! The `/proc/sys/vm` tunables through the console's file interface: every write goes in as
//! text, exactly as `echo VALUE > PATH` would, and the values derived from it (watermarks,
//! lowmem_reserve, pcp high/batch) are checked against Linux's formulas computed here from
//! the zones' managed pages, not against the allocator's own helpers. Refused writes must
//! leave every value as it was. Each test restores what it changed.

use alloc::{format, string::String, vec::Vec};

use console::{
    fs::{self, File},
    gfp::{NAMES, parse_gfp},
    tunable::{self, Kind, TUNABLES},
};
use zonebuddy::{
    model::mmzone::{MAX_NR_ZONES, ZoneType},
    page_alloc::gfp::Gfp,
    page_alloc::sysctl::VmSysctl,
    port::platform::Platform,
};

use crate::{
    kassert, kassert_eq, ktest,
    memory::allocator,
    platform::PLATFORM,
    procfs::{self, node_mask},
};

fn cat(path: &str) -> Result<String, String> {
    let mut s = String::new();
    procfs::read(path, &mut s).map_err(|e| format!("cat {path}: {e}"))?;
    Ok(s)
}

fn echo(value: &str, path: &str) -> Result<(), String> {
    let mut progress = String::new();
    procfs::write(path, value, &mut progress).map_err(|e| format!("echo {value} > {path}: {e}"))
}

fn vm(name: &str) -> String {
    format!("/proc/sys/vm/{name}")
}

/// Every zone of every node with its managed pages.
fn zones() -> Vec<(usize, ZoneType, u64)> {
    let a = allocator();
    a.model()
        .nodes()
        .flat_map(|n| {
            n.node_zones
                .iter()
                .map(move |z| (n.node_id, z.zone_type, z.managed_pages()))
        })
        .collect()
}

/// Linux's `__setup_per_zone_wmarks` for `zone_managed`, from the reference formulas.
fn expected_marks(
    min_free_kbytes: u64,
    scale: u64,
    zone_managed: u64,
    zt: ZoneType,
) -> (u64, u64, u64) {
    let lowmem: u64 = zones()
        .iter()
        .filter(|z| z.1 != ZoneType::Movable)
        .map(|z| z.2)
        .sum();
    let pages_min = min_free_kbytes / 4;
    let tmp = if lowmem == 0 {
        0
    } else {
        (pages_min as u128 * zone_managed as u128 / lowmem as u128) as u64
    };
    let min = if zt == ZoneType::Movable {
        (zone_managed / 1024).clamp(32, 128)
    } else {
        tmp
    };
    let spread = (tmp / 4).max((zone_managed as u128 * scale as u128 / 10_000) as u64);
    (min, min + spread, min + 2 * spread)
}

fn check_watermarks() -> Result<(), String> {
    let a = allocator();
    let s = a.sysctl();
    for (nid, zt, managed) in zones() {
        let z = a.zone_of(nid, zt).ok_or("zone vanished")?;
        let w = z.watermarks();
        let want = expected_marks(s.min_free_kbytes, s.watermark_scale_factor, managed, zt);
        kassert_eq!((nid, zt, (w.min, w.low, w.high)), (nid, zt, want));
    }
    Ok(())
}

fn zone_batchsize(managed: u64) -> u64 {
    let batch = (managed >> 12).min(64);
    if batch <= 1 {
        1
    } else {
        let x = batch + batch / 2;
        (1u64 << (63 - x.leading_zeros())) - 1
    }
}

/// Every CPU's pcp high/batch against Linux's `zone_highsize`/`zone_batchsize`.
fn check_pcp() -> Result<(), String> {
    let a = allocator();
    let fraction = a.sysctl().percpu_pagelist_high_fraction;
    let nr_cpus = PLATFORM.nr_cpus();
    for (nid, zt, managed) in zones() {
        if managed == 0 {
            continue;
        }
        let low = a.zone_of(nid, zt).ok_or("zone vanished")?.watermarks().low;
        let sharing = match (0..nr_cpus)
            .filter(|&c| PLATFORM.cpu_to_node(c) == nid)
            .count()
        {
            0 => nr_cpus as u64,
            n => n as u64,
        };
        let batch = zone_batchsize(managed);
        let total = managed.checked_div(fraction).unwrap_or(low);
        let high = (total / sharing).max(4 * batch);
        for cpu in 0..nr_cpus {
            if let Some((h, b)) = a.with_pcp(cpu, nid, zt, |l| (l.high, l.batch)) {
                kassert_eq!((nid, zt, cpu, h, b), (nid, zt, cpu, high, batch));
            }
        }
    }
    Ok(())
}

/// Linux's `setup_per_zone_lowmem_reserve`.
fn check_lowmem_reserve() -> Result<(), String> {
    let a = allocator();
    let ratio = a.sysctl().lowmem_reserve_ratio;
    for n in a.model().nodes() {
        for i in 0..MAX_NR_ZONES {
            let z = &n.node_zones[i];
            let clear = ratio[i] == 0 || z.managed_pages() == 0;
            let mut want = [0u64; MAX_NR_ZONES];
            let mut upper = 0;
            for (j, w) in want.iter_mut().enumerate().skip(i + 1) {
                upper += n.node_zones[j].managed_pages();
                *w = if clear { 0 } else { upper / ratio[i] };
            }
            kassert_eq!((n.node_id, i, z.lowmem_reserve()), (n.node_id, i, want));
        }
    }
    Ok(())
}

/// Everything a tunable write could change, for "nothing changed" checks.
fn state() -> (VmSysctl, Vec<String>, Vec<(u64, u64, u64)>) {
    let a = allocator();
    let shown = TUNABLES
        .iter()
        .filter_map(|t| procfs::tunable_value(t).map(|v| format!("{v}")))
        .collect();
    let marks = zones()
        .iter()
        .filter_map(|&(nid, zt, _)| a.zone_of(nid, zt))
        .map(|z| {
            let w = z.watermarks();
            (w.min, w.low, w.high)
        })
        .collect();
    (a.sysctl(), shown, marks)
}

ktest! {
    fn cat_prints_every_tunable_as_linux_does() -> TestResult {
        let s = allocator().sysctl();
        kassert_eq!(cat(&vm("min_free_kbytes"))?, format!("{}\n", s.min_free_kbytes));
        kassert_eq!(cat(&vm("watermark_scale_factor"))?, format!("{}\n", s.watermark_scale_factor));
        kassert_eq!(cat(&vm("watermark_boost_factor"))?, format!("{}\n", s.watermark_boost_factor));
        kassert_eq!(
            cat(&vm("percpu_pagelist_high_fraction"))?,
            format!("{}\n", s.percpu_pagelist_high_fraction)
        );
        let r = s.lowmem_reserve_ratio;
        kassert_eq!(cat(&vm("lowmem_reserve_ratio"))?, format!("{}\t{}\t{}\t{}\n", r[0], r[1], r[2], r[3]));
        for name in ["compaction_proactiveness", "extfrag_threshold", "compact_unevictable_allowed"] {
            let text = cat(&vm(name))?;
            kassert!(text.ends_with('\n') && text.trim().parse::<u64>().is_ok(), "{}: {:?}", name, text);
        }
        Ok(())
    }

    fn min_free_kbytes_recomputes_watermarks_and_pcp() -> TestResult {
        let old = allocator().sysctl().min_free_kbytes;
        check_watermarks()?;
        for v in [old * 2, old / 2 + 1, 4096] {
            echo(&format!("{v}"), &vm("min_free_kbytes"))?;
            kassert_eq!(allocator().sysctl().min_free_kbytes, v);
            kassert_eq!(cat(&vm("min_free_kbytes"))?, format!("{v}\n"));
            check_watermarks()?;
            check_pcp()?;
        }
        echo(&format!("{old}"), &vm("min_free_kbytes"))?;
        check_watermarks()?;
        check_pcp()
    }

    fn watermark_scale_factor_spreads_the_marks() -> TestResult {
        let old = allocator().sysctl().watermark_scale_factor;
        for v in ["1000", "1", "3000", "0x64"] {
            echo(v, &vm("watermark_scale_factor"))?;
            check_watermarks()?;
            check_pcp()?;
        }
        kassert_eq!(allocator().sysctl().watermark_scale_factor, 100);
        echo(&format!("{old}"), &vm("watermark_scale_factor"))?;
        check_watermarks()
    }

    fn lowmem_reserve_ratio_recomputes_protection() -> TestResult {
        let old = allocator().sysctl().lowmem_reserve_ratio;
        check_lowmem_reserve()?;
        // A short write changes only the first entries, as in Linux.
        echo("32 16", &vm("lowmem_reserve_ratio"))?;
        kassert_eq!(allocator().sysctl().lowmem_reserve_ratio, [32, 16, old[2], old[3]]);
        check_lowmem_reserve()?;
        echo("1\t1\t1\t1", &vm("lowmem_reserve_ratio"))?;
        check_lowmem_reserve()?;
        echo("0 0 0 0", &vm("lowmem_reserve_ratio"))?;
        check_lowmem_reserve()?;
        for n in allocator().model().nodes() {
            for z in &n.node_zones {
                kassert_eq!(z.lowmem_reserve(), [0; MAX_NR_ZONES]);
            }
        }
        echo(&format!("{} {} {} {}", old[0], old[1], old[2], old[3]), &vm("lowmem_reserve_ratio"))?;
        kassert_eq!(allocator().sysctl().lowmem_reserve_ratio, old);
        check_lowmem_reserve()
    }

    fn percpu_pagelist_high_fraction_resizes_pcp() -> TestResult {
        let old = allocator().sysctl().percpu_pagelist_high_fraction;
        check_pcp()?;
        for v in ["8", "100", "0"] {
            echo(v, &vm("percpu_pagelist_high_fraction"))?;
            check_pcp()?;
        }
        echo(&format!("{old}"), &vm("percpu_pagelist_high_fraction"))?;
        check_pcp()
    }

    fn watermark_boost_factor_reads_back() -> TestResult {
        let old = allocator().sysctl().watermark_boost_factor;
        for v in [0u64, 5000, 15000] {
            echo(&format!("{v}"), &vm("watermark_boost_factor"))?;
            kassert_eq!(cat(&vm("watermark_boost_factor"))?, format!("{v}\n"));
        }
        echo(&format!("{old}"), &vm("watermark_boost_factor"))
    }

    fn compaction_tunables_read_back() -> TestResult {
        for (name, values, default) in [
            ("compaction_proactiveness", [0u64, 100, 37], 20u64),
            ("extfrag_threshold", [0, 1000, 250], 500),
            ("compact_unevictable_allowed", [0, 1, 0], 1),
        ] {
            for v in values {
                echo(&format!("{v}"), &vm(name))?;
                kassert_eq!((name, cat(&vm(name))?), (name, format!("{v}\n")));
            }
            echo(&format!("{default}"), &vm(name))?;
        }
        Ok(())
    }

    fn bad_writes_keep_old_values() -> TestResult {
        let before = state();
        for t in TUNABLES.iter() {
            let mut bad: Vec<String> = ["", "  \n", "abc", "-1", "12abc", "1.5", "0x", "99999999999999999999999", "2147483648"]
                .iter()
                .map(|s| String::from(*s))
                .collect();
            match t.kind {
                Kind::Int { min, max } | Kind::ZeroOr { min, max } => {
                    bad.push(format!("{}", max + 1));
                    if min > 0 && !matches!(t.kind, Kind::ZeroOr { .. }) {
                        bad.push(format!("{}", min - 1));
                    }
                    if let Kind::ZeroOr { min, .. } = t.kind {
                        bad.push(format!("{}", min - 1));
                    }
                    bad.push(String::from("1 2"));
                }
                Kind::List { len, .. } => bad.push((0..=len).map(|i| format!("{i} ")).collect()),
                Kind::Trigger => bad.push(String::from("0")),
                // Only fault-injection attributes have these (ktests::fault_injection).
                Kind::Bool | Kind::MinusOneOr { .. } => {}
            }
            for v in &bad {
                let r = echo(v, &vm(t.name));
                kassert!(r.is_err(), "echo {:?} > {} was accepted", v, t.name);
                kassert!(state() == before, "echo {:?} > {} changed something", v, t.name);
            }
        }
        // The allocator's own checks refuse the same boundaries (it is the authority; the
        // console only refuses earlier with a better message).
        let a = allocator();
        kassert!(a.set_watermark_scale_factor(0).is_err());
        kassert!(a.set_watermark_scale_factor(3001).is_err());
        kassert!(a.set_percpu_pagelist_high_fraction(7).is_err());
        kassert!(a.set_min_free_kbytes(1 << 31).is_err());
        kassert!(a.set_watermark_boost_factor(1 << 31).is_err());
        kassert!(a.set_lowmem_reserve_ratio([0, 0, 0, 1 << 31]).is_err());
        kassert!(state() == before, "a refused setter call changed something");
        Ok(())
    }

    fn triggers_and_views_refuse_the_wrong_direction() -> TestResult {
        kassert!(cat(&vm("compact_memory")).is_err());
        kassert!(echo("0", &vm("compact_memory")).is_err());
        kassert!(echo("2", "/sys/devices/system/node/node0/compact").is_err());
        kassert!(cat("/sys/devices/system/node/node0/compact").is_err());
        kassert!(echo("1", "/proc/vmstat").is_err());
        kassert!(cat("/proc/sys").is_err());
        kassert!(cat("/proc/nope").is_err());
        kassert!(echo("1", "/sys/devices/system/node/node63/compact").is_err() || node_mask() & (1 << 63) != 0);
        Ok(())
    }

    fn every_readable_file_reads() -> TestResult {
        let mut files = Vec::new();
        fs::walk_files(node_mask(), &mut |path, file| files.push((String::from(path), file)));
        kassert!(files.len() > TUNABLES.len());
        for (path, file) in files {
            if !file.readable() {
                kassert!(cat(&path).is_err(), "{} is write-only but cat worked", path);
                continue;
            }
            let text = cat(&path)?;
            let may_be_empty = matches!(file, File::View(fs::View::CompactionZones));
            kassert!(may_be_empty || !text.is_empty(), "{} is empty", path);
            kassert!(text.is_empty() || text.ends_with('\n'), "{} lacks a final newline", path);
        }
        Ok(())
    }

    fn gfp_text_round_trips_through_the_allocators_names() -> TestResult {
        for &(name, bits) in NAMES {
            let shown = format!("{}", Gfp::from_bits_retain(bits));
            kassert_eq!(parse_gfp(&shown).map_err(|e| format!("{e}"))?, bits);
            kassert_eq!(parse_gfp(name).map_err(|e| format!("{e}"))?, bits);
        }
        for g in [zonebuddy::page_alloc::gfp::GFP_KERNEL, zonebuddy::page_alloc::gfp::GFP_ATOMIC, zonebuddy::page_alloc::gfp::GFP_HIGHUSER_MOVABLE, zonebuddy::page_alloc::gfp::GFP_TRANSHUGE, zonebuddy::page_alloc::gfp::GFP_NOWAIT] {
            kassert_eq!(parse_gfp(&format!("{g}")).map_err(|e| format!("{e}"))?, g.bits());
        }
        Ok(())
    }

    fn command_line_names_the_same_tunables() -> TestResult {
        for t in TUNABLES {
            kassert!(procfs::cmdline_tunable(t.name) == Some(t));
            kassert!(procfs::cmdline_tunable(&format!("sysctl.vm.{}", t.name)) == Some(t));
        }
        kassert!(procfs::cmdline_tunable("kernelcore").is_none());
        kassert!(tunable::find("bogus").is_none());
        Ok(())
    }
}

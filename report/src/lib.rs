//! Parsing a console transcript into samples of the allocator's state.
//!
//! The kernel's batch console echoes each command after the prompt marker, so a transcript
//! splits into (command, output) pairs ([`boot::console_commands`]). A *sample* is a run of
//! `cat` commands of the views below, opened by `cat /proc/uptime`; it is labelled with the
//! last command that was not a `cat` (the *phase*: `boot`, `frag`, `compact`,
//! `sleep 500`, ...). Each view is parsed by its own text format, so a format change in the
//! kernel breaks this parser's tests, not silently the pictures.
//!
//! This half of the tool is plain data and text: the plotting lives in `main.rs`.

use boot::ConsoleCommand;

/// Orders of the buddy allocator (0..=10).
pub const NR_ORDERS: usize = 11;

/// One zone's line of a per-zone view.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneRow<T> {
    /// Node id.
    pub node: u32,
    /// Zone name (`DMA`, `DMA32`, `Normal`, `Movable`).
    pub zone: String,
    /// The values.
    pub values: T,
}

/// A zone's row of the pageblock map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRow {
    /// Node id.
    pub node: u32,
    /// Zone name.
    pub zone: String,
    /// First pfn of the first block.
    pub start_pfn: u64,
    /// One symbol per pageblock (see `zonebuddy::report::pageblock_map`).
    pub blocks: String,
}

/// The state of the machine at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// The last non-`cat` command before the sample (`boot` before any).
    pub phase: String,
    /// Seconds since boot (`/proc/uptime`).
    pub uptime: f64,
    /// `/proc/buddyinfo`: free blocks per order, per zone.
    pub buddyinfo: Vec<ZoneRow<[u64; NR_ORDERS]>>,
    /// `unusable_index`, per zone and order, as fractions 0..=1.
    pub unusable: Vec<ZoneRow<[f64; NR_ORDERS]>>,
    /// `fragmentation_score`: per zone.
    pub zone_scores: Vec<ZoneRow<u32>>,
    /// `fragmentation_score`: per node.
    pub node_scores: Vec<(u32, u32)>,
    /// `pageblock_map` rows.
    pub map: Vec<MapRow>,
    /// `/proc/meminfo`: (label without the colon, value in kB).
    pub meminfo: Vec<(String, u64)>,
    /// `/proc/vmstat`: (counter, value).
    pub vmstat: Vec<(String, u64)>,
}

impl Sample {
    /// Free blocks per order summed over zones.
    pub fn free_blocks(&self) -> [u64; NR_ORDERS] {
        let mut out = [0; NR_ORDERS];
        for row in &self.buddyinfo {
            for (o, n) in out.iter_mut().zip(row.values) {
                *o += n;
            }
        }
        out
    }

    /// A `/proc/meminfo` value in kB (`MemFree`, `Cached`, ...), if sampled.
    pub fn meminfo_kb(&self, label: &str) -> Option<u64> {
        self.meminfo
            .iter()
            .find(|(l, _)| l == label)
            .map(|&(_, v)| v)
    }

    /// A `/proc/vmstat` counter (`pgsteal_kswapd`, ...), if sampled.
    pub fn vmstat(&self, name: &str) -> Option<u64> {
        self.vmstat.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Free pages held in blocks of each order, summed over zones.
    pub fn free_pages_by_order(&self) -> [u64; NR_ORDERS] {
        let mut out = self.free_blocks();
        for (order, n) in out.iter_mut().enumerate() {
            *n <<= order;
        }
        out
    }
}

/// A line that did not parse, with where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn bad(what: &str, line: &str) -> ParseError {
    ParseError(format!("{what}: cannot parse {line:?}"))
}

/// `Node N, zone NAME rest...` → (N, NAME, rest).
fn zone_prefix(line: &str) -> Option<(u32, String, &str)> {
    let rest = line.strip_prefix("Node ")?;
    let (node, rest) = rest.split_once(", zone ")?;
    let rest = rest.trim_start();
    let (zone, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((node.trim().parse().ok()?, zone.to_string(), rest))
}

/// Parse `/proc/buddyinfo`.
pub fn parse_buddyinfo(lines: &[String]) -> Result<Vec<ZoneRow<[u64; NR_ORDERS]>>, ParseError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (node, zone, rest) = zone_prefix(l).ok_or_else(|| bad("buddyinfo", l))?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|w| w.parse().map_err(|_| bad("buddyinfo", l)))
                .collect::<Result<_, _>>()?;
            let values = v.try_into().map_err(|_| bad("buddyinfo", l))?;
            Ok(ZoneRow { node, zone, values })
        })
        .collect()
}

/// Parse `unusable_index` (`0.123` per order).
pub fn parse_unusable(lines: &[String]) -> Result<Vec<ZoneRow<[f64; NR_ORDERS]>>, ParseError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (node, zone, rest) = zone_prefix(l).ok_or_else(|| bad("unusable_index", l))?;
            let v: Vec<f64> = rest
                .split_whitespace()
                .map(|w| w.parse().map_err(|_| bad("unusable_index", l)))
                .collect::<Result<_, _>>()?;
            let values = v.try_into().map_err(|_| bad("unusable_index", l))?;
            Ok(ZoneRow { node, zone, values })
        })
        .collect()
}

/// Parse `fragmentation_score`: zone lines and `Node N, node score S` lines.
#[allow(clippy::type_complexity)]
pub fn parse_scores(lines: &[String]) -> Result<(Vec<ZoneRow<u32>>, Vec<(u32, u32)>), ParseError> {
    let (mut zones, mut nodes) = (Vec::new(), Vec::new());
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        if let Some((node, score)) = l
            .strip_prefix("Node ")
            .and_then(|r| r.split_once(", node score "))
        {
            let node = node.trim().parse().map_err(|_| bad("score", l))?;
            let score = score.trim().parse().map_err(|_| bad("score", l))?;
            nodes.push((node, score));
        } else {
            let (node, zone, rest) = zone_prefix(l).ok_or_else(|| bad("score", l))?;
            let values = rest.trim().parse().map_err(|_| bad("score", l))?;
            zones.push(ZoneRow { node, zone, values });
        }
    }
    Ok((zones, nodes))
}

/// Parse `pageblock_map`.
pub fn parse_map(lines: &[String]) -> Result<Vec<MapRow>, ParseError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (node, zone, rest) = zone_prefix(l).ok_or_else(|| bad("pageblock_map", l))?;
            let rest = rest
                .strip_prefix("pfn ")
                .ok_or_else(|| bad("pageblock_map", l))?;
            let (pfn, blocks) = rest.split_once(' ').unwrap_or((rest, ""));
            let start_pfn = pfn.parse().map_err(|_| bad("pageblock_map", l))?;
            if !blocks.chars().all(|c| "UMRHCIF.".contains(c)) {
                return Err(bad("pageblock_map", l));
            }
            Ok(MapRow {
                node,
                zone,
                start_pfn,
                blocks: blocks.to_string(),
            })
        })
        .collect()
}

/// Parse `/proc/uptime` (the first number).
pub fn parse_uptime(lines: &[String]) -> Result<f64, ParseError> {
    let l = lines.first().ok_or_else(|| bad("uptime", ""))?;
    l.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad("uptime", l))
}

/// Parse `/proc/meminfo`: `Label:   12345 kB` lines.
pub fn parse_meminfo(lines: &[String]) -> Result<Vec<(String, u64)>, ParseError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (label, rest) = l.split_once(':').ok_or_else(|| bad("meminfo", l))?;
            let value = rest
                .trim()
                .strip_suffix("kB")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("meminfo", l))?;
            Ok((label.trim().to_string(), value))
        })
        .collect()
}

/// Parse `/proc/vmstat`: `name value` lines.
pub fn parse_vmstat(lines: &[String]) -> Result<Vec<(String, u64)>, ParseError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next().and_then(|v| v.parse().ok()), w.next()) {
                (Some(name), Some(value), None) => Ok((name.to_string(), value)),
                _ => Err(bad("vmstat", l)),
            }
        })
        .collect()
}

/// The samples of a transcript's console commands, in order.
pub fn samples(cmds: &[ConsoleCommand]) -> Result<Vec<Sample>, ParseError> {
    let mut out: Vec<Sample> = Vec::new();
    let mut phase = String::from("boot");
    for c in cmds {
        let Some(path) = c.command.strip_prefix("cat ") else {
            phase = c.command.clone();
            continue;
        };
        let path = path.trim();
        if path == "/proc/uptime" {
            out.push(Sample {
                phase: phase.clone(),
                uptime: parse_uptime(&c.output)?,
                ..Sample::default()
            });
            continue;
        }
        let Some(s) = out.last_mut() else {
            continue;
        };
        match path {
            "/proc/buddyinfo" => s.buddyinfo = parse_buddyinfo(&c.output)?,
            "/sys/kernel/debug/extfrag/unusable_index" => s.unusable = parse_unusable(&c.output)?,
            "/sys/kernel/debug/mm/fragmentation_score" => {
                (s.zone_scores, s.node_scores) = parse_scores(&c.output)?
            }
            "/sys/kernel/debug/mm/pageblock_map" => s.map = parse_map(&c.output)?,
            "/proc/meminfo" => s.meminfo = parse_meminfo(&c.output)?,
            "/proc/vmstat" => s.vmstat = parse_vmstat(&c.output)?,
            _ => {}
        }
    }
    Ok(out)
}

/// The `cat` commands of one sample, for building scripts.
pub const SAMPLE: &str = "cat /proc/uptime; cat /proc/buddyinfo; \
    cat /sys/kernel/debug/extfrag/unusable_index; cat /sys/kernel/debug/mm/fragmentation_score; \
    cat /sys/kernel/debug/mm/pageblock_map";

/// The `cat` commands of one sample of the reclaim session.
pub const RECLAIM_SAMPLE: &str = "cat /proc/uptime; cat /proc/meminfo; cat /proc/vmstat";

/// The ramdisk's large files (`boot/build.rs`), about 23 MiB together.
pub const RAMDISK_DATA_FILES: [&str; 11] = [
    "data00.bin",
    "data01.bin",
    "data02.bin",
    "data03.bin",
    "data04.bin",
    "data05.bin",
    "data06.bin",
    "data07.bin",
    "data08.bin",
    "data09.bin",
    "data10.bin",
];

/// The reclaim session (`make report`, second boot, with the ramdisk and kswapd on): a
/// sample after boot; `hold` order-9 blocks taken (`alloc 9`) so that free memory is
/// smaller than the image; then `rounds` passes reading every data file of the ramdisk
/// through the page cache, sampling after each file; finally `drop_caches` and a sample.
pub fn reclaim_script(hold: usize, rounds: usize) -> String {
    let mut s = RECLAIM_SAMPLE.to_string();
    for _ in 0..hold {
        s.push_str("; alloc 9 GFP_KERNEL");
    }
    s.push_str(&format!("; {RECLAIM_SAMPLE}"));
    for _ in 0..rounds {
        for f in RAMDISK_DATA_FILES {
            s.push_str(&format!("; cat /ramdisk/{f}; {RECLAIM_SAMPLE}"));
        }
    }
    s.push_str(&format!("; drop_caches; {RECLAIM_SAMPLE}"));
    s
}

/// The session `make report` runs: a sample after boot, fragment, sample, compact,
/// sample, fragment again and let kcompactd's proactive compaction work for a few seconds
/// while sampling every half second (its wake-up period).
pub fn report_script(kcompactd_samples: usize) -> String {
    let mut s = format!("{SAMPLE}; frag; {SAMPLE}; compact; {SAMPLE}; frag; {SAMPLE}");
    for _ in 0..kcompactd_samples {
        s.push_str(&format!("; sleep 500; {SAMPLE}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "boot noise\r\n\
memkernel# cat /proc/uptime\r\n\
1.50 0.00\r\n\
memkernel# cat /proc/buddyinfo\r\n\
Node 0, zone      DMA      1      2      2      2      2      1      1      0      1      1      3 \r\n\
Node 0, zone    DMA32      3      2      1      2      2      1      3      3      3      1     53 \r\n\
memkernel# cat /sys/kernel/debug/extfrag/unusable_index\r\n\
Node 0, zone      DMA 0.000 0.003 0.200 0.200 0.212 0.212 0.212 0.212 0.212 0.212 1.000 \r\n\
memkernel# cat /sys/kernel/debug/mm/fragmentation_score\r\n\
Node 0, zone      DMA  21\r\n\
Node 0, zone    DMA32  10\r\n\
Node 0, node score  12\r\n\
memkernel# cat /sys/kernel/debug/mm/pageblock_map\r\n\
Node 0, zone      DMA pfn 0 MMMMMMFM\r\n\
Node 0, zone    DMA32 pfn 4096 FFMMU.\r\n\
memkernel# frag\r\n\
frag: 100 movable pages\r\n\
memkernel# cat /proc/uptime\r\n\
9.25 0.00\r\n\
script: 7 commands, 0 failed\r\n\
powering off\r\n";

    #[test]
    fn a_transcript_becomes_samples() {
        let cmds = boot::console_commands(T);
        let s = samples(&cmds).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].phase, "boot");
        assert_eq!(s[0].uptime, 1.5);
        assert_eq!(s[0].buddyinfo.len(), 2);
        assert_eq!(s[0].buddyinfo[1].zone, "DMA32");
        assert_eq!(s[0].buddyinfo[1].values[10], 53);
        assert_eq!(s[0].free_blocks()[10], 56);
        assert_eq!(s[0].free_pages_by_order()[10], 56 * 1024);
        assert_eq!(s[0].unusable[0].values[1], 0.003);
        assert_eq!(s[0].zone_scores[1].values, 10);
        assert_eq!(s[0].node_scores, [(0, 12)]);
        assert_eq!(s[0].map[1].start_pfn, 4096);
        assert_eq!(s[0].map[1].blocks, "FFMMU.");
        assert_eq!(s[1].phase, "frag");
        assert_eq!(s[1].uptime, 9.25);
        assert!(s[1].buddyinfo.is_empty());
    }

    #[test]
    fn malformed_views_are_errors_not_garbage() {
        let l = |s: &str| vec![s.to_string()];
        assert!(parse_buddyinfo(&l("Node 0, zone DMA 1 2 3")).is_err());
        assert!(parse_buddyinfo(&l("garbage")).is_err());
        assert!(parse_unusable(&l("Node 0, zone DMA x")).is_err());
        assert!(parse_map(&l("Node 0, zone DMA pfn 0 MMZ")).is_err());
        assert!(parse_map(&l("Node 0, zone DMA 0 MM")).is_err());
        assert!(parse_scores(&l("Node 0, node score lots")).is_err());
        assert!(parse_uptime(&[]).is_err());
    }

    #[test]
    fn the_report_script_samples_every_phase() {
        let s = report_script(3);
        let cmds: Vec<&str> = s.split(';').map(str::trim).collect();
        assert_eq!(
            cmds.iter().filter(|c| **c == "cat /proc/uptime").count(),
            4 + 3
        );
        assert_eq!(cmds.iter().filter(|c| c.starts_with("sleep")).count(), 3);
        assert_eq!(cmds[5], "frag");
    }

    #[test]
    fn meminfo_and_vmstat_samples() {
        let t = "memkernel# cat /proc/uptime\r\n\
2.00 0.00\r\n\
memkernel# cat /proc/meminfo\r\n\
MemTotal:         118000 kB\r\n\
MemFree:           20480 kB\r\n\
Cached:             8192 kB\r\n\
memkernel# cat /proc/vmstat\r\n\
nr_free_pages 5120\r\n\
pgsteal_kswapd 300\r\n\
memkernel# cat /ramdisk/data00.bin\r\n\
data00.bin: 8388608 bytes read through the page cache, every byte as generated\r\n\
memkernel# cat /proc/uptime\r\n\
3.00 0.00\r\n\
memkernel# cat /proc/meminfo\r\n\
MemFree:            4096 kB\r\n\
memkernel# ";
        let s = samples(&boot::console_commands(t)).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].meminfo_kb("MemFree"), Some(20480));
        assert_eq!(s[0].meminfo_kb("Cached"), Some(8192));
        assert_eq!(s[0].vmstat("pgsteal_kswapd"), Some(300));
        assert_eq!(s[0].vmstat("pgsteal_direct"), None);
        // A `cat` of anything else is a phase, like any other command.
        assert_eq!(s[1].phase, "boot");
        assert_eq!(s[1].meminfo_kb("MemFree"), Some(4096));
        let l = |s: &str| vec![s.to_string()];
        assert!(parse_meminfo(&l("MemFree: lots")).is_err());
        assert!(parse_meminfo(&l("MemFree 12 kB")).is_err());
        assert!(parse_vmstat(&l("pgsteal_kswapd")).is_err());
        assert!(parse_vmstat(&l("pgsteal_kswapd 1 2")).is_err());
    }

    #[test]
    fn the_reclaim_script_holds_then_reads_every_file() {
        let s = reclaim_script(5, 2);
        let cmds: Vec<&str> = s.split(';').map(str::trim).collect();
        assert_eq!(cmds.iter().filter(|c| c.starts_with("alloc 9")).count(), 5);
        let reads = cmds
            .iter()
            .filter(|c| c.starts_with("cat /ramdisk/"))
            .count();
        assert_eq!(reads, 2 * RAMDISK_DATA_FILES.len());
        // A sample after boot, after holding, after every read and after drop_caches.
        assert_eq!(
            cmds.iter().filter(|c| **c == "cat /proc/uptime").count(),
            2 + reads + 1
        );
        assert_eq!(cmds[cmds.len() - 4], "drop_caches");
    }
}

//! The QEMU machine's NUMA layout: which memory and which CPUs each node has, and the
//! distances between nodes, turned into `-object memory-backend-ram`, `-numa node` and
//! `-numa dist` arguments. QEMU then describes the layout to the guest in ACPI's SRAT
//! and (with distances) SLIT, which is what the kernel reads.

use std::fmt::Write;

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaNode {
    /// Its memory in MiB; 0 for a memory-less node.
    pub mem_mib: u64,
    /// Its CPU indices; empty for a CPU-less node.
    pub cpus: Vec<u32>,
}

/// The whole layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaLayout {
    /// The nodes, in node-id order.
    pub nodes: Vec<NumaNode>,
    /// `distances[a][b]`; None leaves QEMU's default (no SLIT).
    pub distances: Option<Vec<Vec<u8>>>,
}

/// Most nodes `--nodes`/`--numa` accept (QEMU's limit is higher; the kernel's is 64).
pub const MAX_NODES: usize = 8;

/// A QEMU size (`512M`, `6G`, `1024`: MiB without a suffix) in MiB.
pub fn parse_mib(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'G' | 'g')) => (&s[..i], 1024),
        Some((i, 'M' | 'm')) => (&s[..i], 1),
        Some((i, 'T' | 't')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}': expected a size such as 512M or 2G"))
}

fn parse_cpus(s: &str, cpus: u32) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for part in s.split('+').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let (a, b): (u32, u32) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(format!("'{part}': expected CPUs as N or N-M")),
        };
        if b >= cpus {
            return Err(format!("CPU {b} does not exist (the machine has {cpus})"));
        }
        v.extend(a..=b);
    }
    Ok(v)
}

impl NumaLayout {
    /// `n` nodes sharing `mem_mib` and `cpus` evenly (the last node takes what does not
    /// divide; CPUs go out in contiguous blocks, so with fewer CPUs than nodes the last
    /// nodes have none).
    pub fn even(n: usize, mem_mib: u64, cpus: u32) -> Result<NumaLayout, String> {
        if !(1..=MAX_NODES).contains(&n) {
            return Err(format!("{n} nodes: expected 1 to {MAX_NODES}"));
        }
        let per = mem_mib / n as u64;
        if per < 64 {
            return Err(format!(
                "{mem_mib} MiB over {n} nodes leaves less than 64 MiB per node"
            ));
        }
        let per_cpu = (cpus as usize).div_ceil(n);
        let nodes = (0..n)
            .map(|i| NumaNode {
                mem_mib: if i + 1 == n {
                    mem_mib - per * (n as u64 - 1)
                } else {
                    per
                },
                cpus: (0..cpus).filter(|&c| c as usize / per_cpu == i).collect(),
            })
            .collect();
        Ok(NumaLayout {
            nodes,
            distances: None,
        })
    }

    /// A layout written out: `SIZE[:CPUS],SIZE[:CPUS],...` where SIZE is a QEMU size or 0
    /// (memory-less node) and CPUS is `N`, `N-M` or several joined by `+` (`0-1+4`);
    /// without `:CPUS` a node has no CPUs, unless no node names any, in which case they
    /// are spread as [`NumaLayout::even`] does. The sizes must add up to `mem_mib`, and
    /// every CPU must be on exactly one node.
    pub fn parse(spec: &str, mem_mib: u64, cpus: u32) -> Result<NumaLayout, String> {
        let parts: Vec<&str> = spec.split(',').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() || parts.len() > MAX_NODES {
            return Err(format!("--numa '{spec}': expected 1 to {MAX_NODES} nodes"));
        }
        let mut nodes = Vec::new();
        let mut named = false;
        for p in &parts {
            let (size, cpu_list) = match p.split_once(':') {
                Some((s, c)) => {
                    named = true;
                    (s, parse_cpus(c, cpus)?)
                }
                None => (*p, Vec::new()),
            };
            nodes.push(NumaNode {
                mem_mib: parse_mib(size)?,
                cpus: cpu_list,
            });
        }
        if !named {
            let even = NumaLayout::even(nodes.len(), mem_mib.max(64 * nodes.len() as u64), cpus)?;
            for (n, e) in nodes.iter_mut().zip(even.nodes) {
                n.cpus = e.cpus;
            }
        }
        let total: u64 = nodes.iter().map(|n| n.mem_mib).sum();
        if total != mem_mib {
            return Err(format!(
                "--numa '{spec}': the nodes have {total} MiB, the machine {mem_mib} MiB (--mem)"
            ));
        }
        for c in 0..cpus {
            let on = nodes.iter().filter(|n| n.cpus.contains(&c)).count();
            if on != 1 {
                return Err(format!(
                    "--numa '{spec}': CPU {c} is on {on} nodes, not one"
                ));
            }
        }
        Ok(NumaLayout {
            nodes,
            distances: None,
        })
    }

    /// Set the distances from `10,20;20,10` (rows separated by `;`): a square matrix of the
    /// node count, 10 on the diagonal and more elsewhere, as ACPI requires.
    pub fn set_distances(&mut self, spec: &str) -> Result<(), String> {
        let n = self.nodes.len();
        let rows: Vec<Vec<u8>> = spec
            .split(';')
            .map(|r| {
                r.split(',')
                    .map(|v| {
                        v.trim()
                            .parse::<u8>()
                            .map_err(|_| format!("distance '{v}': expected 10 to 255"))
                    })
                    .collect::<Result<Vec<u8>, String>>()
            })
            .collect::<Result<_, _>>()?;
        if rows.len() != n || rows.iter().any(|r| r.len() != n) {
            return Err(format!(
                "--numa-dist '{spec}': expected {n} rows of {n} distances"
            ));
        }
        for (a, row) in rows.iter().enumerate() {
            for (b, &d) in row.iter().enumerate() {
                if (a == b && d != 10) || (a != b && d <= 10) {
                    return Err(format!(
                        "--numa-dist: distance {a}->{b} is {d}; 10 on the diagonal, above 10 elsewhere"
                    ));
                }
            }
        }
        self.distances = Some(rows);
        Ok(())
    }

    /// QEMU's arguments for the layout.
    pub fn qemu_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut spec = format!("node,nodeid={i}");
            if node.mem_mib > 0 {
                args.push("-object".to_string());
                args.push(format!(
                    "memory-backend-ram,id=mem{i},size={}M",
                    node.mem_mib
                ));
                let _ = write!(spec, ",memdev=mem{i}");
            }
            // QEMU takes one `cpus=` per contiguous run.
            let mut k = 0;
            while k < node.cpus.len() {
                let start = node.cpus[k];
                let mut end = start;
                while k + 1 < node.cpus.len() && node.cpus[k + 1] == end + 1 {
                    k += 1;
                    end = node.cpus[k];
                }
                if start == end {
                    let _ = write!(spec, ",cpus={start}");
                } else {
                    let _ = write!(spec, ",cpus={start}-{end}");
                }
                k += 1;
            }
            args.push("-numa".to_string());
            args.push(spec);
        }
        if let Some(d) = &self.distances {
            for (a, row) in d.iter().enumerate() {
                for (b, &v) in row.iter().enumerate() {
                    if a != b {
                        args.push("-numa".to_string());
                        args.push(format!("dist,src={a},dst={b},val={v}"));
                    }
                }
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split() {
        let l = NumaLayout::even(2, 1024, 4).unwrap();
        assert_eq!(
            l.nodes[0],
            NumaNode {
                mem_mib: 512,
                cpus: vec![0, 1]
            }
        );
        assert_eq!(
            l.nodes[1],
            NumaNode {
                mem_mib: 512,
                cpus: vec![2, 3]
            }
        );
        let l = NumaLayout::even(3, 1000, 4).unwrap();
        assert_eq!(
            l.nodes.iter().map(|n| n.mem_mib).collect::<Vec<_>>(),
            [333, 333, 334]
        );
        assert_eq!(l.nodes[2].cpus, [] as [u32; 0]);
        assert!(NumaLayout::even(9, 8192, 4).is_err());
        assert!(NumaLayout::even(4, 200, 4).is_err());
    }

    #[test]
    fn written_layouts() {
        let mut l = NumaLayout::parse("1G:0-1,512M:2+3,0:4,512M", 2048, 5).unwrap();
        assert_eq!(
            l.nodes[2],
            NumaNode {
                mem_mib: 0,
                cpus: vec![4]
            }
        );
        assert_eq!(l.nodes[3].cpus, [] as [u32; 0]);
        l.set_distances("10,20,30,40;20,10,20,30;30,20,10,20;40,30,20,10")
            .unwrap();
        let args = l.qemu_args().join(" ");
        assert!(
            args.contains("-numa node,nodeid=0,memdev=mem0,cpus=0-1"),
            "{args}"
        );
        assert!(
            args.contains("-numa node,nodeid=1,memdev=mem1,cpus=2-3"),
            "{args}"
        );
        assert!(args.contains("-numa node,nodeid=2,cpus=4 "), "{args}");
        assert!(args.contains("-numa node,nodeid=3,memdev=mem3 "), "{args}");
        assert!(args.contains("-numa dist,src=0,dst=3,val=40"), "{args}");
        assert!(!args.contains("memdev=mem2"));
        assert!(
            NumaLayout::parse("1G,1G", 3072, 2).is_err(),
            "sizes must add up"
        );
        assert!(
            NumaLayout::parse("1G:0,1G:0", 2048, 2).is_err(),
            "CPU twice"
        );
        assert!(
            NumaLayout::parse("1G:0,1G", 2048, 2).is_err(),
            "CPU 1 nowhere"
        );
        assert!(NumaLayout::parse("1G:0-2,1G", 2048, 2).is_err(), "no CPU 2");
        assert!(l.set_distances("10,20;20,10").is_err());
        assert!(
            l.set_distances("10,20,20,20;20,10,20,20;20,20,10,20;20,20,20,11")
                .is_err()
        );
        let l = NumaLayout::parse("1G,1G", 2048, 4).unwrap();
        assert_eq!(l.nodes[1].cpus, [2, 3]);
    }
}

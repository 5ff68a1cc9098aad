//! `report`: pictures of fragmentation and compaction (`make report`).
//!
//! ```text
//! report [--out DIR] [--mem 512M] [--cpus 2] [--samples N]   boot QEMU, run the session, plot
//! report --from TRANSCRIPT [--out DIR]                        plot a saved transcript
//! ```
//!
//! The session ([`report::report_script`]) runs in the kernel's batch console; its
//! transcript is saved as `DIR/transcript.txt` so a plot can be redrawn or checked later.
//! Three PNGs and `DIR/report.md` (which embeds them) are written:
//! `free_blocks.png` (free memory by buddy order before and after `compact`),
//! `fragmentation.png` (fragmentation score and order-9 unusable index over time, across
//! fragmenting, compacting and kcompactd's proactive rounds) and `pageblock_map.png` (one
//! square per pageblock, coloured by migratetype, free pageblocks white).
//!
//! A second boot, with the ramdisk and kswapd on ([`report::reclaim_script`]), reads the
//! image through the page cache with less free memory than the image, sampling
//! `/proc/meminfo` and `/proc/vmstat` after every file: `reclaim.png` shows free memory,
//! the cache and what kswapd and direct reclaim took back over time (its transcript is
//! `DIR/reclaim_transcript.txt`; `--reclaim-from PATH` replots a saved one, `--no-reclaim`
//! skips it).
//!
//! Text is drawn with a TrueType font read at run time (default DejaVu Sans from Debian's
//! `fonts-dejavu-core`; `REPORT_FONT=path.ttf` overrides), so rendering needs no system
//! library at all.

use std::{
    error::Error,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use plotters::{prelude::*, style::FontStyle};
use report::{NR_ORDERS, Sample, reclaim_script, report_script, samples};

type Res<T = ()> = Result<T, Box<dyn Error>>;

const FONT: &str = "sans-serif";
const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct Args {
    out: PathBuf,
    from: Option<PathBuf>,
    mem: String,
    cpus: u32,
    samples: usize,
    reclaim: bool,
    reclaim_from: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::from("target/report"),
        from: None,
        mem: "512M".into(),
        cpus: 2,
        samples: 10,
        reclaim: true,
        reclaim_from: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => a.out = PathBuf::from(value()?),
            "--from" => a.from = Some(PathBuf::from(value()?)),
            "--mem" => a.mem = value()?,
            "--cpus" => {
                let v = value()?;
                a.cpus = v
                    .parse()
                    .map_err(|_| format!("--cpus {v}: expected a number"))?;
            }
            "--samples" => {
                let v = value()?;
                a.samples = v
                    .parse()
                    .ok()
                    .filter(|&n| n <= 100)
                    .ok_or_else(|| format!("--samples {v}: expected 0 to 100"))?;
            }
            "--no-reclaim" => a.reclaim = false,
            "--reclaim-from" => a.reclaim_from = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err(
                    "usage: report [--out DIR] [--mem SIZE] [--cpus N] [--samples N] [--no-reclaim] \
                            | report --from TRANSCRIPT [--reclaim-from TRANSCRIPT] [--out DIR]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Res {
    std::fs::create_dir_all(&args.out)?;
    let transcript = match &args.from {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
        None => boot_session(args)?,
    };
    let cmds = boot::console_commands(&transcript);
    let samples = samples(&cmds)?;
    if samples.len() < 3 {
        return Err(format!(
            "the transcript has {} samples; expected at least boot, frag and compact",
            samples.len()
        )
        .into());
    }
    load_font()?;
    let before = samples
        .iter()
        .find(|s| s.phase == "frag")
        .ok_or("no sample after frag")?;
    let after = samples
        .iter()
        .find(|s| s.phase == "compact")
        .ok_or("no sample after compact")?;
    let last = samples.last().ok_or("no samples")?;
    free_blocks_png(&args.out.join("free_blocks.png"), before, after)?;
    fragmentation_png(&args.out.join("fragmentation.png"), &samples)?;
    pageblock_map_png(
        &args.out.join("pageblock_map.png"),
        &[
            ("after frag", before),
            ("after compact", after),
            ("after frag again and kcompactd", last),
        ],
    )?;
    let mut md = summary(&samples, before, after, last);
    let mut written = "report.md, free_blocks.png, fragmentation.png, pageblock_map.png";
    let reclaim_transcript = match (&args.reclaim_from, &args.from) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
        ),
        (None, None) if args.reclaim => Some(reclaim_session(args)?),
        _ => None,
    };
    if let Some(t) = reclaim_transcript {
        let rs = report::samples(&boot::console_commands(&t))?;
        if rs.len() < 3 {
            return Err(format!(
                "the reclaim transcript has {} samples; expected at least boot, after holding memory and after a read",
                rs.len()
            )
            .into());
        }
        reclaim_png(&args.out.join("reclaim.png"), &rs)?;
        md.push_str(&reclaim_summary(&rs));
        written = "report.md, free_blocks.png, fragmentation.png, pageblock_map.png, reclaim.png";
    }
    std::fs::write(args.out.join("report.md"), md)?;
    println!("report: wrote {} ({written})", args.out.display());
    Ok(())
}

/// Memory of the reclaim session's machine, and order-9 blocks it holds before reading:
/// 128 MiB less the 24 MiB ramdisk and the kernel leave about 80 MiB free; holding 56 MiB
/// leaves about 24 MiB, less than the image with its watermarks.
const RECLAIM_MEM: &str = "128M";
const RECLAIM_HOLD_ORDER9: usize = 28;
const RECLAIM_ROUNDS: usize = 2;

fn reclaim_session(args: &Args) -> Res<String> {
    let cfg = boot::RunConfig {
        memory: RECLAIM_MEM.into(),
        cpus: args.cpus,
        ramdisk: true,
        script: Some(reclaim_script(RECLAIM_HOLD_ORDER9, RECLAIM_ROUNDS)),
        timeout: Duration::from_secs(1200),
        ..Default::default()
    };
    run_session(&cfg, &args.out, "reclaim session", "reclaim_transcript.txt")
}

/// Pages counted by a vmstat event since the first sample, in MiB.
fn since_start_mib(samples: &[Sample], s: &Sample, name: &str) -> f64 {
    let first = samples.first().and_then(|f| f.vmstat(name)).unwrap_or(0);
    mib(s.vmstat(name).unwrap_or(0).saturating_sub(first))
}

/// One plotted quantity of a sample, in MiB.
type SampleValue<'a> = Box<dyn Fn(&Sample) -> f64 + 'a>;

fn reclaim_png(path: &Path, samples: &[Sample]) -> Res {
    let kib = |s: &Sample, label: &str| s.meminfo_kb(label).unwrap_or(0) as f64 / 1024.0;
    let series: [(&str, RGBColor, SampleValue); 4] = [
        (
            "MemFree",
            RGBColor(33, 102, 172),
            Box::new(move |s| kib(s, "MemFree")),
        ),
        (
            "Cached (page cache)",
            RGBColor(27, 120, 55),
            Box::new(move |s| kib(s, "Cached")),
        ),
        (
            "pgsteal_kswapd since start",
            RGBColor(214, 96, 77),
            Box::new(|s| since_start_mib(samples, s, "pgsteal_kswapd")),
        ),
        (
            "pgsteal_direct since start",
            RGBColor(118, 42, 131),
            Box::new(|s| since_start_mib(samples, s, "pgsteal_direct")),
        ),
    ];
    let t0 = samples.first().map_or(0.0, |s| s.uptime);
    let tmax = samples.last().map_or(1.0, |s| s.uptime - t0).max(0.1);
    let ymax = samples
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
        .fold(1.0, f64::max)
        * 1.1;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Reading the ramdisk through the page cache with less free memory than the image",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first sample")
        .y_desc("MiB")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    for (name, color, f) in &series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.uptime - t0, f(s))),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn reclaim_summary(samples: &[Sample]) -> String {
    let mut md = String::new();
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return md;
    };
    let d = |name: &str| {
        last.vmstat(name)
            .unwrap_or(0)
            .saturating_sub(first.vmstat(name).unwrap_or(0))
    };
    let min_free = samples
        .iter()
        .skip(1)
        .filter_map(|s| s.meminfo_kb("MemFree"))
        .min()
        .unwrap_or(0);
    let max_cached = samples
        .iter()
        .filter_map(|s| s.meminfo_kb("Cached"))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "\n## Reclaim: the ramdisk read through the page cache under memory pressure\n\n\
         A second boot ({RECLAIM_MEM}, the 24 MiB ramdisk, kswapd on): {RECLAIM_HOLD_ORDER9} order-9 \
         blocks are held so that free memory is smaller than the image, then every data file is \
         read {RECLAIM_ROUNDS} times through the page cache (`cat /ramdisk/FILE` checks every byte), \
         with a sample after each file, and finally `drop_caches`. {} samples over {:.1} s; the \
         raw transcript is `reclaim_transcript.txt`.\n",
        samples.len(),
        last.uptime - first.uptime
    );
    let _ = writeln!(md, "| counter | over the session |");
    let _ = writeln!(md, "| --- | ---: |");
    for name in [
        "pgscan_kswapd",
        "pgsteal_kswapd",
        "pgscan_direct",
        "pgsteal_direct",
        "pageoutrun",
        "drop_pagecache",
    ] {
        let _ = writeln!(md, "| `{name}` | {} |", d(name));
    }
    let stalls: u64 = last
        .vmstat
        .iter()
        .filter(|(n, _)| n.starts_with("allocstall_"))
        .map(|(n, _)| d(n))
        .sum();
    let _ = writeln!(md, "| `allocstall_*` (all zones) | {stalls} |");
    let _ = writeln!(
        md,
        "\nLowest MemFree after memory was held: {} KiB; largest Cached: {} KiB.\n\n\
         ![reclaim](reclaim.png)",
        min_free, max_cached
    );
    md
}

fn boot_session(args: &Args) -> Res<String> {
    let cfg = boot::RunConfig {
        memory: args.mem.clone(),
        cpus: args.cpus,
        script: Some(report_script(args.samples)),
        timeout: Duration::from_secs(1200),
        ..Default::default()
    };
    run_session(&cfg, &args.out, "session", "transcript.txt")
}

/// Boot `cfg`, save the transcript as `out/file`, and return it if the kernel succeeded.
fn run_session(cfg: &boot::RunConfig, out: &Path, what: &str, file: &str) -> Res<String> {
    eprintln!(
        "report: booting QEMU ({} memory, {} CPUs{}) for the {what} ...",
        cfg.memory,
        cfg.cpus,
        if cfg.ramdisk { ", ramdisk" } else { "" }
    );
    let r = boot::run(cfg)?;
    let path = out.join(file);
    std::fs::write(&path, &r.transcript)?;
    if r.outcome != boot::Outcome::KernelSuccess {
        return Err(format!(
            "the {what} failed ({:?}); transcript in {}\n{}",
            r.outcome,
            path.display(),
            r.tail(30)
        )
        .into());
    }
    eprintln!(
        "report: {what} done in {:.1} s; transcript in {}",
        r.elapsed.as_secs_f64(),
        path.display()
    );
    Ok(r.transcript)
}

fn load_font() -> Res {
    let path = std::env::var("REPORT_FONT").unwrap_or_else(|_| DEFAULT_FONT_PATH.into());
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "reading the font {path}: {e} (install Debian's fonts-dejavu-core, or set REPORT_FONT)"
        )
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| format!("{path} is not a usable TrueType font"))?;
    Ok(())
}

const BEFORE: RGBColor = RGBColor(214, 96, 77);
const AFTER: RGBColor = RGBColor(67, 147, 195);

fn mib(pages: u64) -> f64 {
    pages as f64 * 4.0 / 1024.0
}

fn free_blocks_png(path: &Path, before: &Sample, after: &Sample) -> Res {
    let (b, a) = (before.free_pages_by_order(), after.free_pages_by_order());
    let ymax = b.iter().chain(&a).map(|&p| mib(p)).fold(1.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Free memory by buddy block order, before and after compaction",
            (FONT, 24),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(NR_ORDERS as f64 - 0.5), 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(NR_ORDERS)
        .x_label_formatter(&|x| {
            let o = x.round() as u32;
            let kib = 4u64 << o;
            if kib >= 1024 {
                format!("{o} ({} MiB)", kib / 1024)
            } else {
                format!("{o} ({kib} KiB)")
            }
        })
        .x_desc("block order (block size)")
        .y_desc("free memory in blocks of this order (MiB)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    for (series, values, color, offset) in [
        ("after frag", &b, BEFORE, -0.38),
        ("after compact", &a, AFTER, 0.02),
    ] {
        chart
            .draw_series(values.iter().enumerate().map(|(o, &p)| {
                let x = o as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.36, mib(p))], color.filled())
            }))?
            .label(format!(
                "{series}: {} free blocks of order >= 9",
                values[9] / 512 + values[10] / 1024
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

const ZONE_COLORS: [RGBColor; 4] = [
    RGBColor(102, 166, 30),
    RGBColor(231, 41, 138),
    RGBColor(117, 112, 179),
    RGBColor(230, 171, 2),
];

fn fragmentation_png(path: &Path, samples: &[Sample]) -> Res {
    let t0 = samples.first().map_or(0.0, |s| s.uptime);
    let tmax = samples.iter().map(|s| s.uptime - t0).fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fragmentation over time: fragment, compact, fragment again, kcompactd",
            (FONT, 24),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax * 1.03, 0f64..118f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first sample")
        .y_desc("percent")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    let pt = |s: &Sample, v: f64| (s.uptime - t0, v);
    let node: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.node_scores.first().map(|&(_, sc)| pt(s, f64::from(sc))))
        .collect();
    // Samples are joined only across `sleep`s: between the others a command (frag,
    // compact) ran, and a straight line would invent the states it went through.
    let joined = |pts: &[(f64, f64, bool)]| -> Vec<[(f64, f64); 2]> {
        pts.windows(2)
            .filter(|w| w[1].2)
            .map(|w| [(w[0].0, w[0].1), (w[1].0, w[1].1)])
            .collect()
    };
    let node_pts: Vec<(f64, f64, bool)> = samples
        .iter()
        .filter_map(|s| {
            let &(_, sc) = s.node_scores.first()?;
            let (x, y) = pt(s, f64::from(sc));
            Some((x, y, s.phase.starts_with("sleep")))
        })
        .collect();
    chart
        .draw_series(
            joined(&node_pts)
                .into_iter()
                .map(|p| PathElement::new(p, BLACK.stroke_width(3))),
        )?
        .label("node 0 fragmentation score (proactive compaction's measure)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(3)));
    chart.draw_series(node.iter().map(|&p| Circle::new(p, 5, BLACK.filled())))?;
    let zones: Vec<String> = samples
        .iter()
        .flat_map(|s| s.unusable.iter().map(|r| r.zone.clone()))
        .fold(Vec::new(), |mut v, z| {
            if !v.contains(&z) {
                v.push(z);
            }
            v
        });
    for (i, zone) in zones.iter().enumerate() {
        let color = ZONE_COLORS[i % ZONE_COLORS.len()];
        let series: Vec<(f64, f64, bool)> = samples
            .iter()
            .filter_map(|s| {
                let row = s.unusable.iter().find(|r| &r.zone == zone)?;
                let (x, y) = pt(s, row.values[9] * 100.0);
                Some((x, y, s.phase.starts_with("sleep")))
            })
            .collect();
        chart
            .draw_series(
                joined(&series)
                    .into_iter()
                    .map(move |p| PathElement::new(p, color.stroke_width(2))),
            )?
            .label(format!("{zone}: unusable free index at order 9 (x100)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(
            series
                .iter()
                .map(|&(x, y, _)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    // Phase labels where the phase changes.
    let mut last = String::new();
    for s in samples {
        if s.phase != last && !s.phase.starts_with("sleep") {
            let x = s.uptime - t0;
            chart.draw_series(std::iter::once(PathElement::new(
                [(x, 0.0), (x, 104.0)],
                RGBColor(160, 160, 160).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                s.phase.clone(),
                (x, 110.0),
                (FONT, 15).into_font(),
            )))?;
        }
        last = s.phase.clone();
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Colour of a pageblock-map symbol.
fn block_color(c: char) -> RGBColor {
    match c {
        'U' => RGBColor(215, 48, 39),
        'M' => RGBColor(116, 173, 209),
        'R' => RGBColor(253, 174, 97),
        'H' => RGBColor(118, 42, 131),
        'C' => RGBColor(26, 152, 80),
        'I' => RGBColor(150, 150, 150),
        'F' => RGBColor(255, 255, 255),
        _ => RGBColor(40, 40, 40),
    }
}

const LEGEND: [(char, &str); 8] = [
    ('F', "free pageblock"),
    ('M', "Movable"),
    ('U', "Unmovable"),
    ('R', "Reclaimable"),
    ('H', "HighAtomic"),
    ('C', "CMA"),
    ('I', "Isolate"),
    ('.', "no managed memory"),
];

fn pageblock_map_png(path: &Path, panels: &[(&str, &Sample)]) -> Res {
    const CELL: i32 = 9;
    const PER_ROW: usize = 96;
    const LEFT: i32 = 90;
    let rows_of = |s: &Sample| -> usize {
        s.map
            .iter()
            .map(|r| r.blocks.len().div_ceil(PER_ROW).max(1))
            .sum()
    };
    let panel_h = |s: &Sample| 34 + rows_of(s) as i32 * CELL + (s.map.len() as i32) * 6;
    let height = 70 + panels.iter().map(|(_, s)| panel_h(s) + 16).sum::<i32>() + 40;
    let width = LEFT + PER_ROW as i32 * CELL + 30;
    let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&RGBColor(245, 245, 245))?;
    root.draw(&Text::new(
        "Pageblocks (2 MiB each) by migratetype, free pageblocks white",
        (16, 12),
        (FONT, 22).into_font(),
    ))?;
    // Legend.
    let mut x = 16;
    for (c, name) in LEGEND {
        root.draw(&Rectangle::new(
            [(x, 44), (x + 12, 56)],
            block_color(c).filled(),
        ))?;
        root.draw(&Rectangle::new(
            [(x, 44), (x + 12, 56)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(name, (x + 16, 43), (FONT, 14).into_font()))?;
        x += 30 + 9 * name.len() as i32;
    }
    let mut y = 70;
    for (title, s) in panels {
        let free: usize = s.map.iter().map(|r| r.blocks.matches('F').count()).sum();
        let total: usize = s.map.iter().map(|r| r.blocks.len()).sum();
        let score = s.node_scores.first().map_or(0, |n| n.1);
        root.draw(&Text::new(
            format!("{title} (t = {:.1} s): {free} of {total} pageblocks free, fragmentation score {score}", s.uptime),
            (16, y),
            (FONT, 16).into_font(),
        ))?;
        y += 26;
        for row in &s.map {
            root.draw(&Text::new(
                row.zone.clone(),
                (16, y),
                (FONT, 14).into_font(),
            ))?;
            for (i, c) in row.blocks.chars().enumerate() {
                let cx = LEFT + (i % PER_ROW) as i32 * CELL;
                let cy = y + (i / PER_ROW) as i32 * CELL;
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + CELL - 1, cy + CELL - 1)],
                    block_color(c).filled(),
                ))?;
            }
            y += row.blocks.len().div_ceil(PER_ROW).max(1) as i32 * CELL + 6;
        }
        y += 24;
    }
    root.present()?;
    Ok(())
}

fn huge(s: &Sample) -> u64 {
    let b = s.free_blocks();
    b[9] + b[10]
}

fn summary(samples: &[Sample], before: &Sample, after: &Sample, last: &Sample) -> String {
    let mut md = String::new();
    let score = |s: &Sample| s.node_scores.first().map_or(0, |n| n.1);
    let _ = writeln!(md, "# Fragmentation and compaction report\n");
    let _ = writeln!(
        md,
        "A scripted session on the serial console: sample, `frag`, sample, `compact`, sample, \
         `frag` again, then sample every 500 ms while kcompactd compacts proactively \
         (`vm.compaction_proactiveness` default 20: it acts while the score is above 90 and \
         stops at 80). {} samples; the raw transcript is `transcript.txt`.\n",
        samples.len()
    );
    let _ = writeln!(
        md,
        "| moment | uptime (s) | free blocks of order 9 and 10 | node 0 fragmentation score |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: |");
    for (name, s) in [
        ("after frag", before),
        ("after compact", after),
        ("end (frag again, then kcompactd)", last),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.1} | {} | {} |",
            s.uptime,
            huge(s),
            score(s)
        );
    }
    let _ = writeln!(
        md,
        "\n## Free memory by block order\n\n![free blocks](free_blocks.png)\n"
    );
    let _ = writeln!(
        md,
        "## Fragmentation score and unusable index over time\n\n![fragmentation](fragmentation.png)\n"
    );
    let _ = writeln!(
        md,
        "## Where the pageblocks are\n\n![pageblock map](pageblock_map.png)"
    );
    md
}

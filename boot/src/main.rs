//! `boot`: boot memkernel in QEMU. Behind `make run` and `make gdb`.
//!
//! ```text
//! boot [--kernel main|minimal] [--firmware bios|uefi] [--mem 512M] [--cpus N]
//!      [--nodes N | --numa SIZE[:CPUS],SIZE[:CPUS],...] [--numa-dist 10,20;20,10]
//!      [--cmdline "..."] [--script "CMD; CMD"] [--interactive] [--timeout SECS]
//!      [--ramdisk] [--capture] [--gdb] [-- EXTRA QEMU ARGS]
//! ```
//! By default the serial line is the terminal; `--capture` reads it instead and ends with
//! the in-kernel test summary. `--interactive` starts the kernel's serial console after the
//! demo (the terminal's keystrokes go to it); when standard input is not a terminal (or
//! with `--capture`), the runner forwards it to the console once its prompt appears and
//! sends Ctrl-D when it ends, which powers the kernel off. `--script` hands the console a
//! batch of commands through fw_cfg, after which the kernel powers off. `--kernel minimal`
//! boots the minimal example kernel (kernel/mm/examples/minimal-kernel) instead of
//! memkernel, with the same QEMU machine. `--ramdisk` boots the images that carry the
//! ramdisk (a read-only file-system image the kernel's page cache reads; it costs about
//! 24 MiB of the machine's RAM). The exit status is 0 only when the kernel
//! reported success.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use boot::{ConsoleInput, Firmware, Kernel, NumaLayout, Outcome, RunConfig};

/// `--nodes N` or `--numa LAYOUT`, resolved once `--mem` and `--cpus` are known.
enum NumaArg {
    Count(String),
    Layout(String),
}

fn usage() -> &'static str {
    "usage: boot [--kernel main|minimal] [--firmware bios|uefi] [--mem SIZE] [--cpus N] [--nodes N | --numa SIZE[:CPUS],...] [--numa-dist ROWS] \
     [--cmdline TEXT] [--script 'CMD; CMD...'] [--interactive] [--timeout SECS] [--ramdisk] [--capture] \
     [--gdb] [-- QEMU ARGS...]"
}

fn parse_args(args: &[String]) -> Result<RunConfig, String> {
    let mut cfg = RunConfig {
        interactive: true,
        timeout: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut numa_nodes = None;
    let mut numa_dist = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--kernel" => cfg.kernel = Kernel::parse(&value("--kernel")?)?,
            "--firmware" => cfg.firmware = Firmware::parse(&value("--firmware")?)?,
            "--mem" => cfg.memory = value("--mem")?,
            "--cpus" => {
                let v = value("--cpus")?;
                cfg.cpus = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=255).contains(&n))
                    .ok_or_else(|| format!("--cpus {v}: expected a number from 1 to 255"))?;
            }
            "--nodes" => numa_nodes = Some(NumaArg::Count(value("--nodes")?)),
            "--numa" => numa_nodes = Some(NumaArg::Layout(value("--numa")?)),
            "--numa-dist" => numa_dist = Some(value("--numa-dist")?),
            "--cmdline" => cfg.cmdline = value("--cmdline")?,
            "--script" => {
                let v = value("--script")?;
                cfg.script = (!v.trim().is_empty()).then_some(v);
            }
            "--interactive" => cfg.console = true,
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout {v}: expected seconds"))?;
                cfg.timeout = Duration::from_secs(secs);
            }
            "--capture" => cfg.interactive = false,
            "--ramdisk" => cfg.ramdisk = true,
            "--gdb" => cfg.gdb = true,
            "--" => {
                cfg.extra_args.extend(it.by_ref().cloned());
            }
            "-h" | "--help" => return Err(usage().to_string()),
            other => return Err(format!("unknown argument '{other}'\n{}", usage())),
        }
    }
    let mem = || boot::numa::parse_mib(&cfg.memory).map_err(|e| format!("--mem {e}"));
    let mut layout = match numa_nodes {
        None => None,
        // `--nodes 0` or empty (make's default): not a NUMA machine.
        Some(NumaArg::Count(n)) if n.trim().is_empty() || n.trim() == "0" => None,
        Some(NumaArg::Count(n)) => {
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("--nodes {n}: expected a number of nodes"))?;
            Some(NumaLayout::even(n, mem()?, cfg.cpus)?)
        }
        Some(NumaArg::Layout(spec)) if spec.trim().is_empty() => None,
        Some(NumaArg::Layout(spec)) => Some(NumaLayout::parse(&spec, mem()?, cfg.cpus)?),
    };
    match (&mut layout, numa_dist) {
        (_, None) => {}
        (_, Some(d)) if d.trim().is_empty() => {}
        (Some(l), Some(d)) => l.set_distances(&d)?,
        (None, Some(_)) => return Err("--numa-dist needs --nodes or --numa".to_string()),
    }
    cfg.numa = layout;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = match parse_args(&args) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    if cfg.gdb && cfg.kernel == Kernel::Minimal {
        eprintln!("QEMU is halted waiting for gdb on localhost:1234; the minimal kernel's symbols");
        eprintln!(
            "are in {} (loaded where the bootloader chooses).",
            cfg.kernel.elf()
        );
    } else if cfg.gdb {
        eprintln!("QEMU is halted waiting for gdb on localhost:1234. In another terminal run:");
        eprintln!("  {}", boot::gdb_command());
        eprintln!("then e.g. `hbreak kernel::kmain` and `continue` (use hardware breakpoints:");
        eprintln!("the bootloader loads the kernel after gdb attaches, over software ones).");
    }
    // Console input that is not a terminal (a pipe, a file, /dev/null) is read by the
    // runner and forwarded once the console is ready, then ended with Ctrl-D; so is any
    // input with --capture. A terminal gets the serial line itself (QEMU makes it raw).
    if cfg.console && (!cfg.interactive || !std::io::stdin().is_terminal()) {
        cfg.interactive = false;
        cfg.input = Some(ConsoleInput::Stdin);
    }
    cfg.echo = !cfg.interactive;
    eprintln!(
        "booting {}{} firmware, {} memory, {} CPU(s){}{}",
        match cfg.kernel {
            Kernel::Main => "",
            Kernel::Minimal => "the minimal kernel, ",
        },
        cfg.firmware,
        cfg.memory,
        cfg.cpus,
        cfg.numa.as_ref().map_or(String::new(), |l| format!(
            ", {} NUMA nodes ({})",
            l.nodes.len(),
            l.nodes
                .iter()
                .map(|n| format!("{}M/{} CPUs", n.mem_mib, n.cpus.len()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        match boot::kernel_cmdline(&cfg) {
            line if line.is_empty() => String::new(),
            line => format!(", command line '{line}'"),
        }
    );
    if cfg.console {
        eprintln!(
            "the serial console follows the demo: 'help' lists its commands, 'poweroff' or Ctrl-D quits"
        );
    }
    let result = match boot::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match result.outcome {
        Outcome::KernelSuccess => {
            eprintln!(
                "kernel reported success ({:.1} s)",
                result.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Outcome::KernelFailure => {
            eprintln!("kernel reported FAILURE");
            ExitCode::FAILURE
        }
        Outcome::OtherExit(code) => {
            if let Some((_, err)) = result.transcript.split_once("[qemu stderr] ") {
                eprintln!("{}", err.trim_end());
            }
            eprintln!("QEMU exited with status {code:?} without a kernel verdict (triple fault?)");
            ExitCode::FAILURE
        }
        Outcome::Timeout => {
            eprintln!("timed out after {} s; QEMU killed", cfg.timeout.as_secs());
            ExitCode::FAILURE
        }
    }
}

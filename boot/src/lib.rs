//! Host side of memkernel: the disk images and a QEMU runner that returns structured results.
//!
//! `build.rs` turns the kernel binary into BIOS and UEFI images once per build, and does the
//! same for the minimal example kernel (kernel/mm/examples/minimal-kernel). [`run`] boots
//! one configuration — which kernel, firmware, memory size, CPU count, NUMA layout, kernel
//! command line, extra QEMU arguments, timeout — and returns a [`RunResult`]: how QEMU ended, the serial
//! transcript, and the parsed in-kernel test lines. The integration tests in `tests/` and the
//! `boot` binary behind `make run` both use it, so what a user sees and what CI checks come
//! from the same code.
//!
//! QEMU runs under TCG (software emulation): KVM on the build machines is unreliable, and a
//! kernel whose purpose is correctness loses nothing by being emulated.

pub mod numa;
pub use numa::{NumaLayout, NumaNode};

/// The ramdisk's format (kernel/src/rdfs.rs, shared with build.rs and the kernel), for
/// host tools and tests that read the image.
#[path = "../../kernel/src/rdfs.rs"]
pub mod rdfs;

use std::{
    fmt,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The kernel ELF (for gdb).
pub const KERNEL_ELF: &str = env!("KERNEL_ELF");
/// The BIOS disk image.
pub const BIOS_IMAGE: &str = env!("BIOS_IMAGE");
/// The UEFI disk image.
pub const UEFI_IMAGE: &str = env!("UEFI_IMAGE");
/// The ramdisk image (an rdfs image, format in kernel/src/rdfs.rs) built by build.rs.
pub const RAMDISK: &str = env!("RAMDISK");
/// The BIOS disk image with [`RAMDISK`] attached (the bootloader loads it for the kernel).
pub const RAMDISK_BIOS_IMAGE: &str = env!("RAMDISK_BIOS_IMAGE");
/// The UEFI disk image with [`RAMDISK`] attached.
pub const RAMDISK_UEFI_IMAGE: &str = env!("RAMDISK_UEFI_IMAGE");
/// The minimal example kernel's ELF (kernel/mm/examples/minimal-kernel).
pub const MINIMAL_KERNEL_ELF: &str = env!("MINIMAL_KERNEL_ELF");
/// The minimal example kernel's BIOS disk image.
pub const MINIMAL_BIOS_IMAGE: &str = env!("MINIMAL_BIOS_IMAGE");
/// The minimal example kernel's UEFI disk image.
pub const MINIMAL_UEFI_IMAGE: &str = env!("MINIMAL_UEFI_IMAGE");
/// Virtual address the kernel is linked to run at (see the kernel's BOOTLOADER_CONFIG).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// The fw_cfg file the kernel reads its command line from.
pub const CMDLINE_FW_CFG: &str = "opt/memkernel/cmdline";
/// The fw_cfg file the kernel reads a console batch script from.
pub const SCRIPT_FW_CFG: &str = "opt/memkernel/script";
/// The marker the kernel's console prints before each command it runs (and as its prompt).
pub const CONSOLE_PROMPT: &str = "memkernel# ";

/// OVMF firmware, from Debian's `ovmf` package.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template; each run gets its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Status QEMU exits with when the kernel writes 0x10 to isa-debug-exit.
pub const EXIT_SUCCESS: i32 = 33;
/// Status QEMU exits with when the kernel writes 0x11 to isa-debug-exit.
pub const EXIT_FAILURE: i32 = 35;

/// Which firmware boots the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default) with the BIOS image.
    Bios,
    /// OVMF with the UEFI image.
    Uefi,
}

impl Firmware {
    /// Parse `bios` or `uefi`.
    pub fn parse(s: &str) -> Result<Firmware, String> {
        match s.to_ascii_lowercase().as_str() {
            "bios" => Ok(Firmware::Bios),
            "uefi" => Ok(Firmware::Uefi),
            other => Err(format!("unknown firmware '{other}': expected bios or uefi")),
        }
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
    }
}

/// Which kernel boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// memkernel (kernel/).
    #[default]
    Main,
    /// The minimal example kernel (kernel/mm/examples/minimal-kernel): it ignores the
    /// command line and the console script, runs its checks once and exits QEMU.
    Minimal,
}

impl Kernel {
    /// Parse `main` or `minimal`.
    pub fn parse(s: &str) -> Result<Kernel, String> {
        match s.to_ascii_lowercase().as_str() {
            "main" | "memkernel" => Ok(Kernel::Main),
            "minimal" => Ok(Kernel::Minimal),
            other => Err(format!(
                "unknown kernel '{other}': expected main or minimal"
            )),
        }
    }

    /// The disk image this kernel boots from under `firmware`, with the ramdisk attached
    /// when `ramdisk` (memkernel only: the minimal kernel has no use for one).
    pub fn image_with(self, firmware: Firmware, ramdisk: bool) -> &'static str {
        match (self, firmware, ramdisk) {
            (Kernel::Main, Firmware::Bios, true) => RAMDISK_BIOS_IMAGE,
            (Kernel::Main, Firmware::Uefi, true) => RAMDISK_UEFI_IMAGE,
            _ => self.image(firmware),
        }
    }

    /// The disk image this kernel boots from under `firmware` (without a ramdisk).
    pub fn image(self, firmware: Firmware) -> &'static str {
        match (self, firmware) {
            (Kernel::Main, Firmware::Bios) => BIOS_IMAGE,
            (Kernel::Main, Firmware::Uefi) => UEFI_IMAGE,
            (Kernel::Minimal, Firmware::Bios) => MINIMAL_BIOS_IMAGE,
            (Kernel::Minimal, Firmware::Uefi) => MINIMAL_UEFI_IMAGE,
        }
    }

    /// The kernel's ELF file (for gdb).
    pub fn elf(self) -> &'static str {
        match self {
            Kernel::Main => KERNEL_ELF,
            Kernel::Minimal => MINIMAL_KERNEL_ELF,
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::Main => "main",
            Kernel::Minimal => "minimal",
        })
    }
}

/// One QEMU configuration.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The kernel to boot.
    pub kernel: Kernel,
    /// Firmware to boot with.
    pub firmware: Firmware,
    /// Memory size in QEMU's syntax (`512M`, `6G`).
    pub memory: String,
    /// Number of CPUs.
    pub cpus: u32,
    /// NUMA layout (`-numa node,...`, `-numa dist,...`); None for a non-NUMA machine.
    pub numa: Option<NumaLayout>,
    /// Kernel command line (passed through fw_cfg).
    pub cmdline: String,
    /// Console commands for the kernel to run after booting (`;`-separated), then power
    /// off; passed through fw_cfg, not the serial line, so they cannot race the boot.
    pub script: Option<String>,
    /// Run the interactive serial console after the demo (adds `console=1` to the kernel
    /// command line). Only for runs with a person on the terminal: the kernel waits for
    /// input until `poweroff`.
    pub console: bool,
    /// Boot the images with the ramdisk attached ([`RAMDISK`]): the kernel's page cache
    /// reads its files. The ramdisk stays in RAM (about 24 MiB), so small machines go
    /// without it.
    pub ramdisk: bool,
    /// More QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Connect the serial line to this process's terminal (interactive `make run`)
    /// instead of capturing it.
    pub interactive: bool,
    /// Echo the serial transcript to stdout while capturing it.
    pub echo: bool,
    /// Start halted with a gdb stub on tcp::1234.
    pub gdb: bool,
    /// Input for the serial console when nobody types at a terminal (`make run < file`,
    /// a pipe, tests): forwarded to the serial line once the console's prompt appears,
    /// then ended with Ctrl-D, on which the kernel powers off. Needs `console`; the run
    /// captures the transcript (echoed when `echo`).
    pub input: Option<ConsoleInput>,
}

/// Where console input comes from when it is not a terminal (see [`RunConfig::input`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    /// This process's standard input, until it ends.
    Stdin,
    /// These bytes, then end of input.
    Bytes(Vec<u8>),
    /// This file's contents, then end of input (`/dev/null`: end of input at once).
    File(PathBuf),
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            kernel: Kernel::Main,
            firmware: Firmware::Bios,
            memory: "512M".into(),
            cpus: 1,
            numa: None,
            cmdline: String::new(),
            script: None,
            console: false,
            ramdisk: false,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(300),
            interactive: false,
            echo: false,
            gdb: false,
            input: None,
        }
    }
}

/// How QEMU ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel reported success through isa-debug-exit.
    KernelSuccess,
    /// The kernel reported failure through isa-debug-exit.
    KernelFailure,
    /// QEMU exited with another status (0 after a triple fault with `-no-reboot`).
    OtherExit(Option<i32>),
    /// The timeout expired and QEMU was killed.
    Timeout,
}

/// One `test NAME ... ok|FAILED: reason|skipped: reason` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLine {
    /// Test name as printed by the kernel.
    pub name: String,
    /// `Some(reason)` for a failure, `None` otherwise.
    pub failure: Option<String>,
    /// `Some(reason)` for a skipped test (neither passed nor failed), `None` otherwise.
    pub skipped: Option<String>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How QEMU ended.
    pub outcome: Outcome,
    /// Everything the kernel printed on serial (empty for interactive runs).
    pub transcript: String,
    /// Parsed test lines, in order.
    pub tests: Vec<TestLine>,
    /// Suites announced by the kernel (`suite NAME: N tests`).
    pub suites: Vec<(String, usize)>,
    /// Passed and failed counts of the closing `N passed, N failed, N skipped` line, if
    /// printed.
    pub summary: Option<(usize, usize)>,
    /// The skipped count of that closing line (`None` when it was not printed). A skipped
    /// test is never counted as passed.
    pub skipped: Option<usize>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunResult {
    /// Did the kernel report success and print no failure?
    pub fn success(&self) -> bool {
        self.outcome == Outcome::KernelSuccess
            && self.tests.iter().all(|t| t.failure.is_none())
            && !self.transcript.contains("FATAL:")
    }

    /// Names of failed tests.
    pub fn failed_tests(&self) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|t| t.failure.is_some())
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Names of skipped tests, with the reason each gave.
    pub fn skipped_tests(&self) -> Vec<(&str, &str)> {
        self.tests
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.skipped.as_deref()?)))
            .collect()
    }

    /// The last `n` lines of the transcript, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.transcript.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Passed, failed and skipped counts of a closing `N passed, N failed, N skipped` line.
pub type SummaryCounts = (usize, usize, usize);

/// Parse the kernel's test protocol out of a transcript: test lines, suites, and the
/// closing line's counts.
pub fn parse_transcript(
    transcript: &str,
) -> (Vec<TestLine>, Vec<(String, usize)>, Option<SummaryCounts>) {
    let mut tests = Vec::new();
    let mut suites = Vec::new();
    let mut summary = None;
    for line in transcript.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, verdict)) = rest.split_once(" ... ") {
                let reason = |r: &str| r.trim_start_matches(':').trim().to_string();
                let (failure, skipped) = if verdict == "ok" {
                    (None, None)
                } else if let Some(r) = verdict.strip_prefix("FAILED") {
                    (Some(reason(r)), None)
                } else if let Some(r) = verdict.strip_prefix("skipped") {
                    (None, Some(reason(r)))
                } else {
                    continue;
                };
                tests.push(TestLine {
                    name: name.to_string(),
                    failure,
                    skipped,
                });
            }
        } else if let Some(rest) = line.strip_prefix("suite ") {
            if let Some((name, count)) = rest.split_once(": ")
                && let Some(n) = count.strip_suffix(" tests").and_then(|n| n.parse().ok())
            {
                suites.push((name.to_string(), n));
            }
        } else if let Some(counts) = parse_summary(line) {
            summary = Some(counts);
        }
    }
    (tests, suites, summary)
}

/// `N passed, N failed, N skipped`, exactly.
fn parse_summary(line: &str) -> Option<SummaryCounts> {
    let (passed, rest) = line.split_once(" passed, ")?;
    let (failed, skipped) = rest.split_once(" failed, ")?;
    let skipped = skipped.strip_suffix(" skipped")?;
    Some((
        passed.parse().ok()?,
        failed.parse().ok()?,
        skipped.parse().ok()?,
    ))
}

/// Escape a value for QEMU's option syntax (commas are doubled).
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// A temporary copy of the OVMF variable store, removed on drop.
struct VarsCopy(PathBuf);

impl Drop for VarsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn vars_copy() -> std::io::Result<VarsCopy> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "memkernel-ovmf-vars-{}-{}.fd",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::copy(OVMF_VARS, &path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("copying {OVMF_VARS} (install the `ovmf` package): {e}"),
        )
    })?;
    Ok(VarsCopy(path))
}

/// The QEMU command line for `cfg` (without spawning it).
fn command(cfg: &RunConfig, vars: Option<&Path>) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    let image = cfg.kernel.image_with(cfg.firmware, cfg.ramdisk);
    cmd.args(["-machine", "q35", "-cpu", "max", "-accel", "tcg"]);
    cmd.args(["-m", &cfg.memory, "-smp", &cfg.cpus.to_string()]);
    if let Some(numa) = &cfg.numa {
        cmd.args(numa.qemu_args());
    }
    if let (Firmware::Uefi, Some(vars)) = (cfg.firmware, vars) {
        cmd.args([
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        ]);
        cmd.args([
            "-drive",
            &format!("if=pflash,format=raw,file={}", vars.display()),
        ]);
    }
    cmd.args([
        "-drive",
        &format!("format=raw,file={},snapshot=on", qemu_escape(image)),
    ]);
    cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
    cmd.args([
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]);
    // QEMU refuses an empty fw_cfg string; the kernel reads "no file" as an empty line.
    let cmdline = kernel_cmdline(cfg);
    if !cmdline.trim().is_empty() {
        cmd.args([
            "-fw_cfg",
            &format!("name={CMDLINE_FW_CFG},string={}", qemu_escape(&cmdline)),
        ]);
    }
    if let Some(script) = cfg.script.as_deref().filter(|s| !s.trim().is_empty()) {
        cmd.args([
            "-fw_cfg",
            &format!("name={SCRIPT_FW_CFG},string={}", qemu_escape(script)),
        ]);
    }
    if cfg.gdb {
        cmd.args(["-s", "-S"]);
    }
    cmd.args(&cfg.extra_args);
    cmd
}

/// The command line the kernel gets: the configured one, plus `console=1` when asked for.
pub fn kernel_cmdline(cfg: &RunConfig) -> String {
    let mut line = cfg.cmdline.trim().to_string();
    if cfg.console {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str("console=1");
    }
    line
}

/// One command of a console transcript: the command line and what it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleCommand {
    /// The command as echoed after the prompt.
    pub command: String,
    /// Its output lines (carriage returns removed), up to the next prompt or the end.
    pub output: Vec<String>,
}

/// Split a batch transcript into the commands the console echoed and their output.
/// Everything before the first prompt (the boot) is dropped; the closing `script:` and
/// `powering off` lines end the last command's output.
pub fn console_commands(transcript: &str) -> Vec<ConsoleCommand> {
    let mut out: Vec<ConsoleCommand> = Vec::new();
    for line in transcript.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(cmd) = line.strip_prefix(CONSOLE_PROMPT) {
            out.push(ConsoleCommand {
                command: cmd.trim().to_string(),
                output: Vec::new(),
            });
        } else if line.starts_with("script: ") && line.ends_with(" failed") {
            break;
        } else if let Some(last) = out.last_mut() {
            last.output.push(line.to_string());
        }
    }
    out
}

fn outcome_of(status: ExitStatus) -> Outcome {
    match status.code() {
        Some(EXIT_SUCCESS) => Outcome::KernelSuccess,
        Some(EXIT_FAILURE) => Outcome::KernelFailure,
        other => Outcome::OtherExit(other),
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Outcome> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(outcome_of(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::Timeout);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Boot `cfg` and return what happened. Errors are only for failing to start QEMU at all.
pub fn run(cfg: &RunConfig) -> std::io::Result<RunResult> {
    let start = Instant::now();
    let vars = match cfg.firmware {
        Firmware::Uefi => Some(vars_copy()?),
        Firmware::Bios => None,
    };
    let mut cmd = command(cfg, vars.as_ref().map(|v| v.0.as_path()));
    if cfg.interactive {
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let outcome = wait_with_timeout(&mut child, cfg.timeout)?;
        return Ok(RunResult {
            outcome,
            transcript: String::new(),
            tests: Vec::new(),
            suites: Vec::new(),
            summary: None,
            skipped: None,
            elapsed: start.elapsed(),
        });
    }

    cmd.stdin(if cfg.input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let echo = cfg.echo;
    // The reader tells the input forwarder (if any) once the console is ready for input.
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut stdout = stdout;
        let mut transcript = Vec::new();
        let mut buf = [0u8; 4096];
        let mut ready = ConsoleReady::default();
        let mut ready_tx = Some(ready_tx);
        // Raw chunks, not lines: the console's prompt has no newline after it, and a
        // person watching must see it. Firmware may print non-UTF-8 before the kernel.
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if echo {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            transcript.extend_from_slice(&buf[..n]);
            if ready_tx.is_some() && ready.scan(&transcript) {
                let _ = ready_tx.take().map(|tx| tx.send(()));
            }
        }
        transcript
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let forwarder = match (cfg.input.clone(), child.stdin.take()) {
        (Some(input), Some(pipe)) => Some(thread::spawn(move || {
            forward_input(input, pipe, &ready_rx, &done_rx)
        })),
        _ => None,
    };
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let outcome = wait_with_timeout(&mut child, cfg.timeout)?;
    let transcript = reader.join().unwrap_or_default();
    drop(done_tx);
    // A forwarder blocked reading this process's stdin (a terminal or a pipe that stays
    // open) is left behind; one reading bytes or a file has ended or ends now.
    if let Some(f) = forwarder.filter(|f| f.is_finished()) {
        let _ = f.join();
    }
    let qemu_stderr = err_reader.join().unwrap_or_default();
    let mut transcript = String::from_utf8_lossy(&transcript).into_owned();
    if !qemu_stderr.trim().is_empty() {
        transcript.push_str("\n[qemu stderr] ");
        transcript.push_str(&qemu_stderr);
    }
    let (tests, suites, counts) = parse_transcript(&transcript);
    drop(vars);
    Ok(RunResult {
        outcome,
        transcript,
        tests,
        suites,
        summary: counts.map(|(p, f, _)| (p, f)),
        skipped: counts.map(|(_, _, s)| s),
        elapsed: start.elapsed(),
    })
}

/// Watches the serial output for the interactive console's first prompt: the
/// `serial console:` banner, then [`CONSOLE_PROMPT`]. Input sent before it could reach the
/// UART before the kernel is listening (firmware, the boot, the demo) and be lost when the
/// kernel resets the UART's FIFOs, so the runner holds input until then.
#[derive(Default)]
struct ConsoleReady {
    /// Where to look next (everything before was searched).
    from: usize,
    banner_at: Option<usize>,
}

impl ConsoleReady {
    const BANNER: &'static [u8] = b"serial console: ";

    /// Look at the transcript so far; true once the prompt after the banner appeared.
    fn scan(&mut self, transcript: &[u8]) -> bool {
        let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
            let from = from.min(hay.len());
            hay[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|i| from + i)
        };
        let back = Self::BANNER.len().max(CONSOLE_PROMPT.len());
        let from = self.from.saturating_sub(back);
        self.from = transcript.len();
        if self.banner_at.is_none() {
            self.banner_at = find(transcript, Self::BANNER, from).map(|i| i + Self::BANNER.len());
        }
        match self.banner_at {
            Some(at) => find(transcript, CONSOLE_PROMPT.as_bytes(), at.max(from)).is_some(),
            None => false,
        }
    }
}

/// The byte that ends console input (Ctrl-D): on an empty line the kernel powers off.
pub const END_OF_INPUT: u8 = 0x04;

/// Copy `input` into QEMU's serial line once the console is ready, then end it with
/// [`END_OF_INPUT`] (after a newline if the last line had none, so its command still
/// runs). Holds the pipe open until QEMU is gone, so nothing reads as a hang-up early.
fn forward_input(
    input: ConsoleInput,
    mut pipe: std::process::ChildStdin,
    ready: &mpsc::Receiver<()>,
    done: &mpsc::Receiver<()>,
) {
    if ready.recv().is_err() {
        return; // QEMU ended before the console started.
    }
    let mut source: Box<dyn Read> = match input {
        ConsoleInput::Stdin => Box::new(std::io::stdin()),
        ConsoleInput::Bytes(b) => Box::new(std::io::Cursor::new(b)),
        ConsoleInput::File(path) => match std::fs::File::open(&path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!(
                    "console input {}: {e}; sending end of input",
                    path.display()
                );
                Box::new(std::io::empty())
            }
        },
    };
    let mut buf = [0u8; 4096];
    let mut last = b'\n';
    loop {
        match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last = buf[n - 1];
                if pipe
                    .write_all(&buf[..n])
                    .and_then(|_| pipe.flush())
                    .is_err()
                {
                    return; // QEMU is gone (e.g. `poweroff` came before the end).
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let mut tail = Vec::new();
    if last != b'\n' && last != b'\r' {
        tail.push(b'\n');
    }
    tail.push(END_OF_INPUT);
    let _ = pipe.write_all(&tail).and_then(|_| pipe.flush());
    let _ = done.recv();
}

fn spawn_error(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("starting qemu-system-x86_64 (install the `qemu-system-x86` package): {e}"),
    )
}

/// The gdb invocation that loads the kernel's symbols at the address it runs at.
pub fn gdb_command() -> String {
    format!(
        "gdb -ex 'add-symbol-file {KERNEL_ELF} -o {KERNEL_BASE:#x}' -ex 'target remote localhost:1234'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol_lines() {
        let t = "noise\r\nsuite ktests::boot: 3 tests\r\ntest ktests::boot::a ... ok\r\n\
                 test ktests::boot::b ... FAILED: left 1, right 2\r\n\
                 test ktests::boot::c ... skipped: needs at least 2 CPUs\r\n\
                 1 passed, 1 failed, 1 skipped\r\n";
        let (tests, suites, summary) = parse_transcript(t);
        assert_eq!(suites, vec![("ktests::boot".to_string(), 3)]);
        assert_eq!(tests.len(), 3);
        assert_eq!(
            tests[0],
            TestLine {
                name: "ktests::boot::a".into(),
                failure: None,
                skipped: None,
            }
        );
        assert_eq!(tests[1].failure.as_deref(), Some("left 1, right 2"));
        assert_eq!(tests[1].skipped, None);
        // A skip is neither a pass nor a failure.
        assert_eq!(tests[2].failure, None);
        assert_eq!(tests[2].skipped.as_deref(), Some("needs at least 2 CPUs"));
        assert_eq!(summary, Some((1, 1, 1)));
    }

    #[test]
    fn ignores_lookalike_lines() {
        let (tests, suites, summary) = parse_transcript(
            "test of something\nsuite x: many tests\n3 passed\n3 passed, 0 failed\n",
        );
        assert!(tests.is_empty() && suites.is_empty() && summary.is_none());
    }

    #[test]
    fn console_flag_extends_the_command_line() {
        let mut cfg = RunConfig::default();
        assert_eq!(kernel_cmdline(&cfg), "");
        cfg.console = true;
        assert_eq!(kernel_cmdline(&cfg), "console=1");
        cfg.cmdline = " min_free_kbytes=4096 ".into();
        assert_eq!(kernel_cmdline(&cfg), "min_free_kbytes=4096 console=1");
    }

    #[test]
    fn script_goes_through_fw_cfg() {
        let cfg = RunConfig {
            script: Some("frag; cat /proc/buddyinfo, x".into()),
            ..Default::default()
        };
        let args: Vec<String> = command(&cfg, None)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&format!(
                "name={SCRIPT_FW_CFG},string=frag; cat /proc/buddyinfo,, x"
            )),
            "{args:?}"
        );
        let empty = RunConfig {
            script: Some("  ".into()),
            ..Default::default()
        };
        let args: Vec<String> = command(&empty, None)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.contains(SCRIPT_FW_CFG)));
    }

    #[test]
    fn transcripts_split_into_commands() {
        let t = "boot noise\r\nmemkernel# cat /proc/buddyinfo\r\nNode 0, zone DMA 1\r\n\
                 memkernel# compact\r\ncompact: 3 ms\r\nscript: 2 commands, 0 failed\r\n\
                 powering off\r\n";
        let cmds = console_commands(t);
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].command, "cat /proc/buddyinfo");
        assert_eq!(cmds[0].output, ["Node 0, zone DMA 1"]);
        assert_eq!(cmds[1].command, "compact");
        assert_eq!(cmds[1].output, ["compact: 3 ms"]);
        assert!(console_commands("no prompt here").is_empty());
    }

    #[test]
    fn console_is_ready_only_at_the_prompt_after_the_banner() {
        let mut r = ConsoleReady::default();
        // A script's echoed commands come before the banner: not ready yet.
        let mut t = b"boot\r\nmemkernel# frag\r\nfrag: ...\r\nserial cons".to_vec();
        assert!(!r.scan(&t));
        t.extend_from_slice(b"ole: type 'help'\r\nmemkern");
        assert!(!r.scan(&t));
        t.extend_from_slice(b"el# ");
        assert!(r.scan(&t));
        let mut fresh = ConsoleReady::default();
        assert!(fresh.scan(&t), "one chunk holding everything");
    }

    #[test]
    fn escapes_commas_for_qemu() {
        assert_eq!(qemu_escape("a=1,2"), "a=1,,2");
    }

    #[test]
    fn kernel_picks_its_image() {
        for (kernel, firmware, image) in [
            (Kernel::Main, Firmware::Bios, BIOS_IMAGE),
            (Kernel::Minimal, Firmware::Bios, MINIMAL_BIOS_IMAGE),
            (Kernel::Minimal, Firmware::Uefi, MINIMAL_UEFI_IMAGE),
        ] {
            let cfg = RunConfig {
                kernel,
                firmware,
                ..Default::default()
            };
            let args: Vec<String> = command(&cfg, None)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let drive = format!("format=raw,file={},snapshot=on", qemu_escape(image));
            assert!(args.contains(&drive), "{kernel} {firmware}: {args:?}");
        }
        assert_ne!(MINIMAL_BIOS_IMAGE, BIOS_IMAGE);
        assert_eq!(Kernel::parse("Minimal"), Ok(Kernel::Minimal));
        assert_eq!(Kernel::parse("main"), Ok(Kernel::Main));
        assert!(Kernel::parse("tiny").is_err());
    }

    #[test]
    fn firmware_names() {
        assert_eq!(Firmware::parse("UEFI"), Ok(Firmware::Uefi));
        assert!(Firmware::parse("coreboot").is_err());
    }
}

#[cfg(test)]
mod rdfs_tests {
    use super::rdfs::{self, Image, RdfsError};

    fn image() -> Vec<u8> {
        std::fs::read(super::RAMDISK).expect("build.rs wrote the ramdisk")
    }

    /// The image build.rs made parses, its files are where the table says, their
    /// checksums hold, and the generated ones are what the generator makes.
    #[test]
    fn built_ramdisk_parses_and_checks() {
        let bytes = image();
        let img = Image::parse(&bytes).unwrap();
        assert!(img.nr_files() >= 3);
        assert!(
            (16 << 20..=128 << 20).contains(&img.len()),
            "{} bytes",
            img.len()
        );
        for n in 0..img.nr_files() {
            let e = img.entry(n).unwrap();
            let data = img.data(n).unwrap();
            assert_eq!(data.len() as u64, e.size);
            assert_eq!(
                rdfs::fnv1a(rdfs::FNV_OFFSET, data),
                e.checksum,
                "{}",
                e.name()
            );
            assert_eq!(img.find(e.name()), Some(n));
            assert_eq!(img.name(n), Some(e.name()));
            if e.kind == rdfs::Kind::Generated {
                let mut buf = vec![0u8; data.len().min(10_000)];
                rdfs::fill_generated(img.seed(), n, 0, &mut buf);
                assert_eq!(&data[..buf.len()], &buf[..]);
                // Any position on its own.
                let mut one = [0u8; 13];
                let at = data.len().saturating_sub(13) / 2;
                rdfs::fill_generated(img.seed(), n, at as u64, &mut one[..data.len().min(13)]);
                assert_eq!(
                    &data[at..at + data.len().min(13)],
                    &one[..data.len().min(13)]
                );
            }
        }
        assert!(img.find("hello.txt").is_some() && img.find("nope").is_none());
    }

    /// Every kind of damage is a clear error, never a panic.
    #[test]
    fn damaged_images_are_rejected() {
        let good = image();
        let table_end = rdfs::HEADER_LEN + 64 * Image::parse(&good).unwrap().nr_files() as usize;
        type Expect = fn(&RdfsError) -> bool;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (good[..10].to_vec(), |e| {
                matches!(e, RdfsError::TooShort(10))
            }),
            (good[..good.len() - 1].to_vec(), |e| {
                matches!(e, RdfsError::LengthMismatch { .. })
            }),
            (
                {
                    let mut b = good.clone();
                    b[0] ^= 1;
                    b
                },
                |e| *e == RdfsError::BadMagic,
            ),
            (
                {
                    let mut b = good.clone();
                    b[8] = 9;
                    b
                },
                |e| *e == RdfsError::BadVersion(9),
            ),
            (
                {
                    let mut b = good.clone();
                    b[12..16].copy_from_slice(&1000u32.to_le_bytes());
                    b
                },
                |e| *e == RdfsError::TooManyFiles(1000),
            ),
            (
                {
                    let mut b = good.clone();
                    b[table_end - 20] ^= 0x40;
                    b
                },
                |e| *e == RdfsError::TableChecksum,
            ),
        ];
        for (i, (bytes, ok)) in cases.iter().enumerate() {
            let e = Image::parse(bytes).unwrap_err();
            assert!(ok(&e), "case {i}: {e}");
            assert!(!e.to_string().is_empty());
        }
        // A table that checks out but points outside the image, or overlaps.
        let mut b = good.clone();
        let e0 = rdfs::HEADER_LEN;
        let len = b.len() as u64;
        b[e0 + 32..e0 + 40].copy_from_slice(&len.to_le_bytes());
        let sum = rdfs::fnv1a(rdfs::FNV_OFFSET, &b[rdfs::HEADER_LEN..table_end]);
        b[32..40].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(Image::parse(&b).unwrap_err(), RdfsError::BadExtent(0));
        // A name with a slash.
        let mut b = good.clone();
        b[e0] = b'/';
        let sum = rdfs::fnv1a(rdfs::FNV_OFFSET, &b[rdfs::HEADER_LEN..table_end]);
        b[32..40].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(Image::parse(&b).unwrap_err(), RdfsError::BadName(0));
        // Random bytes never panic.
        let mut x = 0x1234_5678u64;
        for len in [0usize, 63, 64, 65, 4096, 70_000] {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(Image::parse(&junk).is_err());
        }
    }
}

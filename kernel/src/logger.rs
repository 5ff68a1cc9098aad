//! `log` backend on the serial console.
//!
//! Every subsystem, including the portable `mm` crate, reports through the `log` macros; the
//! kernel decides where the text goes. Records are prefixed with their level so a reader (or
//! the host runner, which fails a run on unexpected `ERROR` lines) can tell warnings from
//! information; `loglevel=` on the command line sets the threshold.

use log::{LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            kprintln!("[{:>5}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Install the logger at `Info`.
pub fn init() {
    // Ignoring the error is right: it only says a logger was already installed.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Parse a `loglevel=` value (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    match value {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

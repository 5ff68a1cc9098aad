//! The COM1 serial line: the kernel's only console.
//!
//! Everything a user or the host test runner reads comes through here, so output must never
//! interleave mid-line between CPUs and must work from any context, including exception and
//! panic handlers. Writers take one spinlock with local interrupts disabled; the panic path
//! may steal the lock (see [`force_unlock`]) because a CPU that panicked while printing
//! would otherwise deadlock the very report that explains the panic.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::{Config, Uart16550, backend::PioBackend};

/// I/O port base of COM1.
const COM1: u16 = 0x3f8;

/// The UART, present once [`init`] ran.
static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// Initialise COM1 (115200 8N1, FIFO on). Safe to call more than once.
pub fn init() {
    let mut port = PORT.lock();
    if port.is_some() {
        return;
    }
    // SAFETY: 0x3f8..0x3ff are COM1's registers on every PC-compatible machine QEMU
    // emulates; the kernel owns them exclusively and only touches them under PORT's lock.
    let uart = unsafe { Uart16550::new_port(COM1) };
    if let Ok(mut uart) = uart
        && uart.init(Config::default()).is_ok()
    {
        *port = Some(uart);
    }
}

/// The locked UART as a `fmt::Write`, turning `\n` into `\r\n` for terminals in raw mode.
struct SerialWriter<'a>(&'a mut Uart16550<PioBackend>);

impl Write for SerialWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.split_inclusive('\n') {
            if let Some(line) = chunk.strip_suffix('\n') {
                self.0.send_bytes_exact(line.as_bytes());
                self.0.send_bytes_exact(b"\r\n");
            } else {
                self.0.send_bytes_exact(chunk.as_bytes());
            }
        }
        Ok(())
    }
}

/// Print formatted text to the serial line as one uninterrupted unit.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut port = PORT.lock();
        if let Some(uart) = port.as_mut() {
            let _ = SerialWriter(uart).write_fmt(args);
        }
    });
}

/// Read one byte if one is waiting: the line status register's data-ready bit, then the
/// receive buffer. The console polls this (no receive interrupt is needed: it halts until
/// the next timer tick between polls).
pub fn try_read_byte() -> Option<u8> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        PORT.lock()
            .as_mut()
            .and_then(|uart| uart.try_receive_byte().ok())
    })
}

/// Break the serial lock so a panicking CPU can report.
///
/// # Safety
/// Only the panic and fatal-exception paths may call this, after which the kernel never
/// resumes normal operation: a writer that held the lock may see its line interleaved.
pub unsafe fn force_unlock() {
    // SAFETY: the caller guarantees we are on the way to shutting the machine down, so the
    // previous holder's critical section will never be relied upon again.
    unsafe { PORT.force_unlock() };
}

/// `print!` to the serial console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::arch::serial::write_fmt(format_args!($($arg)*)) };
}

/// `println!` to the serial console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::arch::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

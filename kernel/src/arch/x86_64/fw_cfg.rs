//! QEMU's firmware configuration device (fw_cfg), used to read the kernel command line.
//!
//! The bootloader has no way to pass a command line, and rebuilding the disk image for every
//! configuration would be slow. QEMU can expose named blobs through fw_cfg
//! (`-fw_cfg name=opt/memkernel/cmdline,string=...`); the kernel reads the file directory
//! through the legacy I/O-port interface (selector 0x510, data 0x511) and fetches the blob.

use x86_64::instructions::port::Port;

/// The fw_cfg file that carries the kernel command line.
pub const CMDLINE_FILE: &str = "opt/memkernel/cmdline";

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const FW_CFG_SIGNATURE: u16 = 0x0000;
const FW_CFG_FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: 0x510 is the fw_cfg selector on QEMU's PC machines; writing a key only
    // chooses which item subsequent data reads return.
    unsafe { Port::<u16>::new(SELECTOR).write(key) };
}

fn read_bytes(buf: &mut [u8]) {
    let mut port = Port::<u8>::new(DATA);
    for b in buf {
        // SAFETY: reading the fw_cfg data port returns the next byte of the selected item
        // (or 0 past its end); it has no other side effect.
        *b = unsafe { port.read() };
    }
}

/// Is a fw_cfg device present?
pub fn present() -> bool {
    select(FW_CFG_SIGNATURE);
    let mut sig = [0u8; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Read the named fw_cfg file into `buf`; returns the bytes stored (truncated to `buf`) and
/// the file's full size, or `None` when there is no device or no such file.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<(usize, usize)> {
    if !present() {
        return None;
    }
    select(FW_CFG_FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    let count = u32::from_be_bytes(count);
    for _ in 0..count {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as usize;
        let key = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let len = raw_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(raw_name.len());
        if &raw_name[..len] == name.as_bytes() {
            select(key);
            let n = size.min(buf.len());
            read_bytes(&mut buf[..n]);
            return Some((n, size));
        }
    }
    None
}

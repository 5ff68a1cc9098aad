//! Builds the BIOS and UEFI disk images of both kernels: memkernel and the minimal example
//! kernel (kernel/mm/examples/minimal-kernel), and the ramdisk that memkernel's page cache
//! reads (an rdfs image, format in kernel/src/rdfs.rs, which this script includes).
//!
//! The kernels are artifact dependencies built for `x86_64-unknown-none`; cargo hands us
//! their paths. The images do not depend on the kernel command line (the runner passes it
//! through QEMU's fw_cfg), so one pair of images per kernel serves every configuration.
//! memkernel gets a second pair with the ramdisk attached (`boot --ramdisk`): the default
//! images stay without one, because the bootloader keeps a ramdisk in RAM for the
//! kernel's whole life and a 128 MiB machine cannot spare it.

use std::{
    env,
    path::{Path, PathBuf},
};

use bootloader::{BootConfig, DiskImageBuilder};

#[allow(dead_code)]
#[path = "../kernel/src/rdfs.rs"]
mod rdfs;

/// The seed of the ramdisk's generated files (the kernel reads it from the header).
const RAMDISK_SEED: u64 = 0x6d65_6d6b_6572_6e6c;

/// The artifact path cargo passes for artifact `var`.
fn artifact(var: &str) -> PathBuf {
    PathBuf::from(env::var_os(var).unwrap_or_else(|| panic!("cargo did not pass {var}")))
}

/// Write `<prefix>bios.img` and `<prefix>uefi.img` for `kernel` into `out_dir`, with
/// `ramdisk` attached if given.
fn images(
    kernel: &Path,
    out_dir: &Path,
    prefix: &str,
    ramdisk: Option<&Path>,
) -> (PathBuf, PathBuf) {
    let mut config = BootConfig::default();
    // The serial line belongs to the kernel: its transcript is parsed by the test runner.
    config.serial_logging = false;
    let mut builder = DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_boot_config(&config);
    if let Some(r) = ramdisk {
        builder.set_ramdisk(r.to_path_buf());
    }

    let bios = out_dir.join(format!("{prefix}bios.img"));
    let uefi = out_dir.join(format!("{prefix}uefi.img"));
    builder
        .create_bios_image(&bios)
        .unwrap_or_else(|e| panic!("creating the BIOS disk image {}: {e}", bios.display()));
    builder
        .create_uefi_image(&uefi)
        .unwrap_or_else(|e| panic!("creating the UEFI disk image {}: {e}", uefi.display()));
    (bios, uefi)
}

/// The ramdisk's files: (name, size) of the generated ones, after two text files.
const GENERATED: &[(&str, u64)] = &[
    ("data00.bin", 8 << 20),
    ("data01.bin", (4 << 20) + 1),
    ("data02.bin", (3 << 20) + 4095),
    ("data03.bin", 2 << 20),
    ("data04.bin", (2 << 20) + 100),
    ("data05.bin", 1 << 20),
    ("data06.bin", (1 << 20) - 1),
    ("data07.bin", (512 << 10) + 7),
    ("data08.bin", 512 << 10),
    ("data09.bin", 1 << 20),
    ("data10.bin", (256 << 10) + 3),
    ("small0.bin", 1),
    ("small1.bin", 4095),
    ("small2.bin", 4096),
    ("small3.bin", 4097),
    ("small4.bin", 100 << 10),
];

fn readme() -> String {
    let total: u64 = GENERATED.iter().map(|&(_, s)| s).sum();
    let mut t = String::from(
        "memkernel ramdisk (rdfs)\n\
         ========================\n\n\
         A read-only image built by boot/build.rs and loaded by the bootloader as the\n\
         kernel's ramdisk. Its files are read through the page cache (zonebuddy's\n\
         reclaim::filemap): a clean cache page can be dropped at any time\n\
         (echo 1 > /proc/sys/vm/drop_caches, kswapd, direct reclaim) and is read again\n\
         from here on the next access.\n\n",
    );
    t.push_str(&format!(
        "{} generated files, {} bytes, seed {RAMDISK_SEED:#x}: every byte is a function of\n\
         the seed, the file and its position, so the kernel checks each page it reads.\n\n",
        GENERATED.len(),
        total
    ));
    for &(name, size) in GENERATED {
        t.push_str(&format!("  {name:<12} {size:>10} bytes\n"));
    }
    t
}

/// Build the rdfs image: header, file table, then each file's data page-aligned.
fn ramdisk_image() -> Vec<u8> {
    let mut files: Vec<(&str, rdfs::Kind, Vec<u8>)> = vec![
        ("README", rdfs::Kind::Text, readme().into_bytes()),
        (
            "hello.txt",
            rdfs::Kind::Text,
            b"Hello from the ramdisk, through the page cache.\n".to_vec(),
        ),
    ];
    for (i, &(name, size)) in GENERATED.iter().enumerate() {
        let mut data = vec![0u8; size as usize];
        rdfs::fill_generated(RAMDISK_SEED, (i + 2) as u32, 0, &mut data);
        files.push((name, rdfs::Kind::Generated, data));
    }
    let mut offset = rdfs::data_start(files.len());
    let mut table = Vec::new();
    for (name, kind, data) in &files {
        let e = rdfs::Entry {
            name: rdfs::encode_name(name).expect("valid ramdisk file name"),
            offset,
            size: data.len() as u64,
            checksum: rdfs::fnv1a(rdfs::FNV_OFFSET, data),
            kind: *kind,
        };
        table.extend_from_slice(&e.encode());
        offset = (offset + data.len() as u64).div_ceil(rdfs::PAGE) * rdfs::PAGE;
    }
    let len = offset;
    let mut image = Vec::with_capacity(len as usize);
    image.extend_from_slice(&rdfs::encode_header(
        files.len() as u32,
        len,
        RAMDISK_SEED,
        rdfs::fnv1a(rdfs::FNV_OFFSET, &table),
    ));
    image.extend_from_slice(&table);
    for (_, _, data) in &files {
        image.resize(
            image.len().div_ceil(rdfs::PAGE as usize) * rdfs::PAGE as usize,
            0,
        );
        image.extend_from_slice(data);
    }
    image.resize(len as usize, 0);
    rdfs::Image::parse(&image).expect("the ramdisk image just built parses");
    image
}

/// A copy of `elf` without its DWARF sections, written into `out_dir`, for the disk images.
///
/// The kernel is built with full debug info (16 MiB of its 19 MiB ELF) so that `make gdb`
/// and `addr2line` on a crash address work. The bootloader never reads that DWARF, but
/// its BIOS stage copies the whole file from disk in small real-mode reads, and under TCG
/// that copy is a large share of every boot. The images carry this stripped copy;
/// `KERNEL_ELF` still names the original for the debugger. `rust-objcopy` ships with
/// every rustc (it is the linker's companion), so no extra component is needed; if it
/// cannot be run, the images get the unstripped ELF and the build says so.
fn strip_debug_info(elf: &Path, out_dir: &Path) -> PathBuf {
    let name = elf.file_name().expect("the artifact is a file");
    let stripped = out_dir.join(format!("{}.stripped", name.to_string_lossy()));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let host = env::var("HOST").expect("HOST is set by cargo");
    let objcopy = sysroot.map(|s| s.join("lib/rustlib").join(host).join("bin/rust-objcopy"));
    let status = objcopy.as_ref().and_then(|tool| {
        std::process::Command::new(tool)
            .arg("--strip-debug")
            .arg(elf)
            .arg(&stripped)
            .status()
            .ok()
    });
    if status.is_some_and(|s| s.success()) {
        stripped
    } else {
        println!(
            "cargo:warning=could not strip debug info with {objcopy:?} (status {status:?}): \
             the disk images carry the full kernel ELF, and boots are slower"
        );
        elf.to_path_buf()
    }
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    println!("cargo:rerun-if-changed=../kernel/src/rdfs.rs");
    println!("cargo:rerun-if-changed=build.rs");

    let kernel = artifact("CARGO_BIN_FILE_KERNEL_kernel");
    let kernel_image = strip_debug_info(&kernel, &out_dir);
    let (bios, uefi) = images(&kernel_image, &out_dir, "", None);
    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=UEFI_IMAGE={}", uefi.display());

    let ramdisk = out_dir.join("ramdisk.rdfs");
    std::fs::write(&ramdisk, ramdisk_image())
        .unwrap_or_else(|e| panic!("writing the ramdisk {}: {e}", ramdisk.display()));
    let (bios, uefi) = images(&kernel_image, &out_dir, "ramdisk-", Some(&ramdisk));
    println!("cargo:rustc-env=RAMDISK={}", ramdisk.display());
    println!("cargo:rustc-env=RAMDISK_BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=RAMDISK_UEFI_IMAGE={}", uefi.display());

    let minimal = artifact("CARGO_BIN_FILE_MINIMAL_KERNEL_minimal-kernel");
    let (bios, uefi) = images(
        &strip_debug_info(&minimal, &out_dir),
        &out_dir,
        "minimal-",
        None,
    );
    println!("cargo:rustc-env=MINIMAL_KERNEL_ELF={}", minimal.display());
    println!("cargo:rustc-env=MINIMAL_BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=MINIMAL_UEFI_IMAGE={}", uefi.display());
}

//! Builds the BIOS and UEFI disk images of both kernels: memkernel and the minimal example
//! kernel (kernel/mm/examples/minimal-kernel).
//!
//! The kernels are artifact dependencies built for `x86_64-unknown-none`; cargo hands us
//! their paths. The images do not depend on the kernel command line (the runner passes it
//! through QEMU's fw_cfg), so one pair of images per kernel serves every configuration.

use std::{
    env,
    path::{Path, PathBuf},
};

use bootloader::{BootConfig, DiskImageBuilder};

/// The path cargo passes for artifact `var`.
fn artifact(var: &str) -> PathBuf {
    PathBuf::from(env::var_os(var).unwrap_or_else(|| panic!("cargo did not pass {var}")))
}

/// Write `<prefix>bios.img` and `<prefix>uefi.img` for `kernel` into `out_dir`.
fn images(kernel: &Path, out_dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
    let mut config = BootConfig::default();
    // The serial line belongs to the kernel: its transcript is parsed by the test runner.
    config.serial_logging = false;
    let mut builder = DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_boot_config(&config);

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

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));

    let kernel = artifact("CARGO_BIN_FILE_KERNEL_kernel");
    let (bios, uefi) = images(&kernel, &out_dir, "");
    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=UEFI_IMAGE={}", uefi.display());

    let minimal = artifact("CARGO_BIN_FILE_MINIMAL_KERNEL_minimal-kernel");
    let (bios, uefi) = images(&minimal, &out_dir, "minimal-");
    println!("cargo:rustc-env=MINIMAL_KERNEL_ELF={}", minimal.display());
    println!("cargo:rustc-env=MINIMAL_BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=MINIMAL_UEFI_IMAGE={}", uefi.display());
}

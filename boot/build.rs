//! Builds the BIOS and UEFI disk images from the kernel binary.
//!
//! The kernel is an artifact dependency built for `x86_64-unknown-none`; cargo hands us its
//! path. The images do not depend on the kernel command line (the runner passes it through
//! QEMU's fw_cfg), so one pair of images serves every configuration.

use std::{env, path::PathBuf};

use bootloader::{BootConfig, DiskImageBuilder};

fn main() {
    let kernel = PathBuf::from(
        env::var_os("CARGO_BIN_FILE_KERNEL_kernel")
            .expect("cargo did not pass the kernel artifact"),
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));

    let mut config = BootConfig::default();
    // The serial line belongs to the kernel: its transcript is parsed by the test runner.
    config.serial_logging = false;
    let mut builder = DiskImageBuilder::new(kernel.clone());
    builder.set_boot_config(&config);

    let bios = out_dir.join("bios.img");
    let uefi = out_dir.join("uefi.img");
    builder
        .create_bios_image(&bios)
        .expect("creating the BIOS disk image");
    builder
        .create_uefi_image(&uefi)
        .expect("creating the UEFI disk image");

    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=BIOS_IMAGE={}", bios.display());
    println!("cargo:rustc-env=UEFI_IMAGE={}", uefi.display());
}

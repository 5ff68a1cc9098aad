//! Boot the minimal example kernel (kernel/mm/examples/minimal-kernel) under BIOS and UEFI
//! and check what it says on serial: the page allocator, built through zonebuddy's public
//! API only, allocated orders 0, 3 and 9, wrote and read them through the direct map,
//! printed `/proc/buddyinfo`, passed the invariant checker, and exited with success.

use boot::{Firmware, Kernel, Outcome, RunConfig};
use integration::{BOOT_TIMEOUT, boot};

fn assert_minimal_kernel_passes(firmware: Firmware) {
    let cfg = RunConfig {
        kernel: Kernel::Minimal,
        firmware,
        memory: "256M".into(),
        cpus: 1,
        timeout: BOOT_TIMEOUT,
        ..Default::default()
    };
    let r = boot(&cfg);
    let ctx = format!(
        "minimal kernel, {firmware} 256M 1 CPU: outcome {:?}, {:.1}s\n--- transcript ---\n{}",
        r.outcome,
        r.elapsed.as_secs_f64(),
        r.tail(60)
    );
    // The kernel's lines: the runner appends QEMU's own stderr (warnings) after them.
    let lines: Vec<&str> = r
        .transcript
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.starts_with("[qemu stderr]"))
        .collect();
    for order in [0, 3, 9] {
        let prefix = format!("minimal-kernel: order {order}: pfn ");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for order {order}\n{ctx}"));
        let bytes = 4096u64 << order;
        assert!(
            line.ends_with(&format!(
                "{bytes} bytes written and read back through the direct map"
            )),
            "order {order}: {line}\n{ctx}"
        );
    }
    let zones: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("Node 0, zone"))
        .collect();
    assert!(
        zones.iter().any(|l| l.contains("DMA32")),
        "buddyinfo has no DMA32 line\n{ctx}"
    );
    // Every buddyinfo line has a count for each of the 11 orders.
    for l in &zones {
        let counts = l.split_whitespace().skip(4);
        assert_eq!(counts.count(), 11, "buddyinfo line {l:?}\n{ctx}");
    }
    assert!(
        lines.contains(&"minimal-kernel: invariant checker: clean"),
        "the invariant checker did not report clean\n{ctx}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("FAILED") || l.contains("panic")),
        "{ctx}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("minimal-kernel: all checks passed"),
        "{ctx}"
    );
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{ctx}");
    eprintln!(
        "minimal kernel, {firmware}: passed in {:.1}s",
        r.elapsed.as_secs_f64()
    );
}

#[test]
fn minimal_kernel_bios() {
    assert_minimal_kernel_passes(Firmware::Bios);
}

#[test]
fn minimal_kernel_uefi() {
    assert_minimal_kernel_passes(Firmware::Uefi);
}

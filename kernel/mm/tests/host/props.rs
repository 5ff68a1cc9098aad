//! Property tests: random and adversarial firmware maps through the whole memory model,
//! checked against the independent oracle in `common`.
//!
//! Deterministic: a fixed RNG seed; failing cases are persisted by proptest under
//! `proptest-regressions/` and replayed first on every run.

use crate::common;

use proptest::prelude::*;
use std::cell::Cell;
use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::{MemoryModel, ModelError, ModelParams};
use zonebuddy::model::mmzone::{PAGE_SIZE, PAGES_PER_SECTION};
use zonebuddy::model::zone::CoreSize;
use zonebuddy::port::sim::SimPlatform;

use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};

const SECTION: u64 = PAGES_PER_SECTION * PAGE_SIZE;
/// Random machines built per run (about 10 ms each).
const CASES: u32 = 256;

#[derive(Clone, Debug)]
struct Chunk {
    section: u64,
    offset_pages: u64,
    len_pages: u64,
    head_bytes: u64,
    tail_bytes: u64,
    kind: RangeKind,
    pieces: u64,
}

fn section_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..40,               // below 5 GiB: DMA, DMA32, Normal boundaries
        2 => 40u64..1024,            // up to 128 GiB
        1 => 1024u64..16384,         // up to 2 TiB
    ]
}

fn chunk_strategy() -> impl Strategy<Value = Chunk> {
    (
        section_strategy(),
        0..PAGES_PER_SECTION,
        prop_oneof![3 => 1u64..64, 5 => 64u64..PAGES_PER_SECTION * 2],
        prop_oneof![3 => Just(0u64), 1 => 1u64..4096],
        prop_oneof![3 => Just(0u64), 1 => 1u64..4096],
        prop_oneof![5 => Just(RangeKind::Usable), 1 => Just(RangeKind::Bootloader)],
        prop_oneof![3 => Just(1u64), 1 => 2u64..40],
    )
        .prop_map(
            |(section, offset_pages, len_pages, head_bytes, tail_bytes, kind, pieces)| Chunk {
                section,
                offset_pages,
                len_pages,
                head_bytes,
                tail_bytes,
                kind,
                pieces,
            },
        )
}

fn noise_kind() -> impl Strategy<Value = RangeKind> {
    prop_oneof![
        Just(RangeKind::Reserved),
        Just(RangeKind::AcpiReclaimable),
        Just(RangeKind::AcpiNvs),
        Just(RangeKind::Unusable),
        Just(RangeKind::Bootloader),
        Just(RangeKind::Usable),
        (6u32..100).prop_map(RangeKind::Unknown),
    ]
}

/// Build the raw firmware map: chunks (possibly split UEFI-style into adjacent pieces, with
/// unaligned ends), noise ranges overlapping them, empty and inverted entries; shuffled.
fn map_strategy() -> impl Strategy<Value = (Vec<FirmwareRange>, Vec<(u64, u64)>)> {
    (
        prop::collection::vec(chunk_strategy(), 1..6),
        prop::collection::vec(
            (
                0usize..6,
                0u64..PAGES_PER_SECTION * 2,
                1u64..2048,
                noise_kind(),
            ),
            0..8,
        ),
        prop::collection::vec((0usize..6, 0u64..PAGES_PER_SECTION, 1u64..64), 0..3),
        0usize..3,
    )
        .prop_flat_map(|(chunks, noise, extra, nbad)| {
            let mut v = Vec::new();
            let mut anchors = Vec::new();
            for c in &chunks {
                let start = c.section * SECTION + c.offset_pages * PAGE_SIZE + c.head_bytes;
                let end = (c.section * SECTION + (c.offset_pages + c.len_pages) * PAGE_SIZE)
                    .saturating_sub(c.tail_bytes)
                    .max(start);
                anchors.push(start & !(PAGE_SIZE - 1));
                let step = ((end - start) / c.pieces).max(1);
                let mut s = start;
                for i in 0..c.pieces {
                    let e = if i + 1 == c.pieces {
                        end
                    } else {
                        (s + step).min(end)
                    };
                    if s < e {
                        v.push(FirmwareRange::new(s, e, c.kind));
                    }
                    s = e;
                }
            }
            for (a, off, len, kind) in noise {
                let base = anchors[a % anchors.len()] + off * PAGE_SIZE;
                v.push(FirmwareRange::new(base, base + len * PAGE_SIZE / 2, kind));
            }
            let extra: Vec<(u64, u64)> = extra
                .into_iter()
                .map(|(a, off, len)| {
                    let base = anchors[a % anchors.len()] + off * PAGE_SIZE + 123;
                    (base, base + len * PAGE_SIZE)
                })
                .collect();
            for i in 0..nbad {
                let a = anchors[i % anchors.len()];
                v.push(FirmwareRange::new(
                    a + 0x5000,
                    a + 0x5000,
                    RangeKind::Usable,
                ));
                v.push(FirmwareRange::new(
                    a + 0x9000,
                    a + 0x3000,
                    RangeKind::Reserved,
                ));
            }
            (Just(v).prop_shuffle(), Just(extra))
        })
}

fn core_strategy() -> impl Strategy<Value = (Option<CoreSize>, Option<CoreSize>)> {
    let size = prop_oneof![
        (1u32..=100).prop_map(CoreSize::Percent),
        (1u64..8192).prop_map(|mib| CoreSize::Bytes(mib << 20)),
    ];
    (
        prop::option::weighted(0.3, size.clone()),
        prop::option::weighted(0.3, size),
    )
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6d6d_6d6f_6465_6c31),
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/props.txt",
        ))),
        ..Config::default()
    }
}

#[test]
fn random_maps_build_consistent_models() {
    let mut runner = TestRunner::new(config(CASES));
    let built = Cell::new(0u32);
    let out_of_memory = Cell::new(0u32);
    let rejected = Cell::new(0u32);
    let result = runner.run(
        &(map_strategy(), core_strategy()),
        |((ranges, extra), (kernelcore, movablecore))| {
            let ram = common::ram_intervals(&ranges);
            let params = ModelParams {
                kernelcore,
                movablecore,
                ..ModelParams::default()
            };
            let platform = match SimPlatform::for_map(&ranges, &extra, 1) {
                Ok(p) => p,
                Err(zonebuddy::port::sim::SimError::Map(e)) => {
                    // Only a map without a whole usable page may be rejected.
                    prop_assert!(ram.iter().all(|r| r.2 != RangeKind::Usable), "{e}");
                    rejected.set(rejected.get() + 1);
                    return Ok(());
                }
                Err(e) => panic!("{e}"),
            };
            match MemoryModel::init(&platform, &ranges, &extra, &params) {
                Ok(model) => {
                    let c =
                        common::check_model(&model, &ranges, &extra, &[], kernelcore, movablecore);
                    // Overhead: one struct page per frame of each present section plus
                    // small fixed costs; when sections are nearly full that is <= 1.6%.
                    let per_section = PAGES_PER_SECTION * 64 + 64;
                    prop_assert!(
                        model.metadata_bytes()
                            <= c.sections * per_section + 4096 * (c.sections + 2) + 8192
                    );
                    if c.ram_pages * 100 >= c.sections * PAGES_PER_SECTION * 98 {
                        prop_assert!(model.metadata_permille_percent() <= 1600);
                    }
                    built.set(built.get() + 1);
                }
                Err(
                    ModelError::Sparse(_) | ModelError::NodeData { .. } | ModelError::NoFreeMemory,
                ) => {
                    // Acceptable only when the usable runs cannot hold one memmap (2 MiB +
                    // the usemap, 514 pages) per present section, plus pages for roots.
                    let mut secs: Vec<u64> = ram
                        .iter()
                        .flat_map(|r| (r.0 / PAGES_PER_SECTION)..=((r.1 - 1) / PAGES_PER_SECTION))
                        .collect();
                    secs.dedup();
                    let fit: u64 = ram
                        .iter()
                        .filter(|r| r.2 == RangeKind::Usable)
                        .map(|r| (r.1 - r.0).saturating_sub(4) / 514)
                        .sum();
                    prop_assert!(
                        fit < secs.len() as u64,
                        "init failed although {fit} memmaps fit for {} sections",
                        secs.len()
                    );
                    out_of_memory.set(out_of_memory.get() + 1);
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "random maps: {} models built and checked, {} out of early memory, {} maps without RAM",
        built.get(),
        out_of_memory.get(),
        rejected.get()
    );
    // The generator must mostly produce machines that boot, or the test checks little.
    assert!(
        built.get() >= CASES / 2,
        "too few maps built a model: {}",
        built.get()
    );
}

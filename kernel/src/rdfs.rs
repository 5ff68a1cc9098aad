//! rdfs, the read-only file-system image the bootloader loads as the kernel's ramdisk.
//!
//! Page reclaim needs something reclaimable that a user would have: file pages that can be
//! dropped at any time and read again. The files come from this image, which the host
//! runner builds at build time (boot/build.rs includes this very file, so writer and
//! reader share one definition of the format) and the bootloader loads next to the
//! kernel. The format is deliberately simple: the kernel reads it with no allocation, and
//! every field is validated before it is trusted, so a truncated or corrupted image is
//! reported in one clear line and the page cache is simply absent.
//!
//! ```text
//!   offset 0      header (64 bytes)
//!                   magic      [u8; 8]  "MKRDFS01"
//!                   version    u32      1
//!                   nr_files   u32      at most MAX_FILES
//!                   image_len  u64      bytes of the whole image
//!                   seed       u64      seed of the generated files' contents
//!                   table_sum  u64      FNV-1a 64 of the file table's bytes
//!                   reserved   [u8; 24] zero
//!   offset 64     file table: nr_files entries of 64 bytes, in ascending data order
//!                   name       [u8; 32] UTF-8, NUL-padded, printable, no '/'
//!                   offset     u64      from the image start, a multiple of PAGE
//!                   size       u64      bytes
//!                   checksum   u64      FNV-1a 64 of the file's bytes
//!                   kind       u32      0: generated from the seed, 1: text
//!                   reserved   u32      zero
//!   page aligned  file data, each file starting on a page boundary, in table order
//! ```
//!
//! All integers are little-endian. A *generated* file's bytes are a function of the seed,
//! the file's index and the byte's position ([`generated_word`]), so any page of it can be
//! checked on its own without reading the file from the start; every file, generated or
//! text, also carries its checksum.
//!
//! This module is `core` only (it is compiled into the kernel and into the build script).

/// The image's magic bytes.
pub const MAGIC: [u8; 8] = *b"MKRDFS01";
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;
/// File-table entry size in bytes.
pub const ENTRY_LEN: usize = 64;
/// Longest file name in bytes.
pub const NAME_LEN: usize = 32;
/// Most files an image holds (the page cache serves 128 files).
pub const MAX_FILES: usize = 128;
/// Alignment of file data.
pub const PAGE: u64 = 4096;
/// Largest file (the page cache serves files up to 1 GiB).
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// What a file's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Generated from the image's seed ([`generated_word`]).
    Generated,
    /// Text (for `cat`).
    Text,
}

/// Why an image was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdfsError {
    /// Shorter than a header.
    TooShort(u64),
    /// The magic bytes are not [`MAGIC`].
    BadMagic,
    /// A version this code does not read.
    BadVersion(u32),
    /// More than [`MAX_FILES`] files.
    TooManyFiles(u32),
    /// The header's length disagrees with the loaded length.
    LengthMismatch {
        /// Length in the header.
        header: u64,
        /// Bytes the bootloader loaded.
        loaded: u64,
    },
    /// The file table does not fit in the image.
    TableOutside,
    /// The file table's checksum does not match.
    TableChecksum,
    /// Entry `n` has an empty, non-UTF-8 or unprintable name, or one with a `/`.
    BadName(u32),
    /// Two entries share a name.
    DuplicateName(u32),
    /// Entry `n`'s data is unaligned, outside the image, overlaps the table or the
    /// previous file, or is larger than [`MAX_FILE_SIZE`].
    BadExtent(u32),
    /// Entry `n` has an unknown kind or non-zero reserved bytes.
    BadEntry(u32),
}

impl core::fmt::Display for RdfsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RdfsError::TooShort(n) => write!(f, "{n} bytes, shorter than the 64-byte header"),
            RdfsError::BadMagic => write!(f, "bad magic (not an rdfs image)"),
            RdfsError::BadVersion(v) => write!(f, "version {v}, this kernel reads {VERSION}"),
            RdfsError::TooManyFiles(n) => write!(f, "{n} files, at most {MAX_FILES}"),
            RdfsError::LengthMismatch { header, loaded } => {
                write!(f, "header says {header} bytes, {loaded} were loaded")
            }
            RdfsError::TableOutside => write!(f, "the file table lies outside the image"),
            RdfsError::TableChecksum => write!(f, "file table checksum mismatch"),
            RdfsError::BadName(n) => write!(f, "file {n}: bad name"),
            RdfsError::DuplicateName(n) => write!(f, "file {n}: duplicate name"),
            RdfsError::BadExtent(n) => write!(f, "file {n}: data outside the image or misplaced"),
            RdfsError::BadEntry(n) => write!(f, "file {n}: unknown kind or reserved bytes set"),
        }
    }
}

/// FNV-1a 64, continued from `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a 64's starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Word `w` (bytes `8w..8w+8`, little-endian) of generated file `file` under `seed`: a
/// splitmix64 step of a key mixing all three, so every word is independent of the others.
pub fn generated_word(seed: u64, file: u32, w: u64) -> u64 {
    let mut z = seed ^ ((file as u64 + 1) << 40) ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` with generated file `file`'s bytes from byte `pos` on.
pub fn fill_generated(seed: u64, file: u32, pos: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let at = pos + i as u64;
        let word = generated_word(seed, file, at / 8).to_le_bytes();
        let off = (at % 8) as usize;
        let n = (8 - off).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[off..off + n]);
        i += n;
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// One file-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Byte offset of the data in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// FNV-1a 64 of the data.
    pub checksum: u64,
    /// What the data is.
    pub kind: Kind,
}

impl Entry {
    /// The name as text (validated by [`Image::parse`]).
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }

    /// The 64 bytes of this entry.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[..NAME_LEN].copy_from_slice(&self.name);
        e[32..40].copy_from_slice(&self.offset.to_le_bytes());
        e[40..48].copy_from_slice(&self.size.to_le_bytes());
        e[48..56].copy_from_slice(&self.checksum.to_le_bytes());
        let kind: u32 = match self.kind {
            Kind::Generated => 0,
            Kind::Text => 1,
        };
        e[56..60].copy_from_slice(&kind.to_le_bytes());
        e
    }

    fn decode(b: &[u8], n: u32) -> Result<Entry, RdfsError> {
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&b[..NAME_LEN]);
        let kind = match u32_at(b, 56) {
            0 => Kind::Generated,
            1 => Kind::Text,
            _ => return Err(RdfsError::BadEntry(n)),
        };
        if u32_at(b, 60) != 0 {
            return Err(RdfsError::BadEntry(n));
        }
        Ok(Entry {
            name,
            offset: u64_at(b, 32),
            size: u64_at(b, 40),
            checksum: u64_at(b, 48),
            kind,
        })
    }
}

/// A name as the table stores it, if it is a valid one.
pub fn encode_name(name: &str) -> Option<[u8; NAME_LEN]> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if !ok {
        return None;
    }
    let mut n = [0u8; NAME_LEN];
    n[..name.len()].copy_from_slice(name.as_bytes());
    Some(n)
}

/// The header's 64 bytes.
pub fn encode_header(nr_files: u32, image_len: u64, seed: u64, table_sum: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&nr_files.to_le_bytes());
    h[16..24].copy_from_slice(&image_len.to_le_bytes());
    h[24..32].copy_from_slice(&seed.to_le_bytes());
    h[32..40].copy_from_slice(&table_sum.to_le_bytes());
    h
}

/// Where file data starts for `nr_files` files: the first page after the table.
pub fn data_start(nr_files: usize) -> u64 {
    ((HEADER_LEN + nr_files * ENTRY_LEN) as u64).div_ceil(PAGE) * PAGE
}

/// A validated image.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    nr_files: u32,
    seed: u64,
}

impl<'a> Image<'a> {
    /// Validate `bytes` as an image: header, table checksum, every entry (name, kind,
    /// extent inside the image, page aligned, after the table and the previous file).
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, RdfsError> {
        let len = bytes.len() as u64;
        if bytes.len() < HEADER_LEN {
            return Err(RdfsError::TooShort(len));
        }
        if bytes[..8] != MAGIC {
            return Err(RdfsError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(RdfsError::BadVersion(version));
        }
        let nr_files = u32_at(bytes, 12);
        if nr_files as usize > MAX_FILES {
            return Err(RdfsError::TooManyFiles(nr_files));
        }
        let header_len = u64_at(bytes, 16);
        if header_len != len {
            return Err(RdfsError::LengthMismatch {
                header: header_len,
                loaded: len,
            });
        }
        let table_end = HEADER_LEN + nr_files as usize * ENTRY_LEN;
        if table_end > bytes.len() {
            return Err(RdfsError::TableOutside);
        }
        if fnv1a(FNV_OFFSET, &bytes[HEADER_LEN..table_end]) != u64_at(bytes, 32) {
            return Err(RdfsError::TableChecksum);
        }
        let img = Image {
            bytes,
            nr_files,
            seed: u64_at(bytes, 24),
        };
        let mut next = data_start(nr_files as usize);
        for n in 0..nr_files {
            let e = img.raw_entry(n)?;
            if encode_name(e.name()).is_none_or(|enc| enc != e.name) {
                return Err(RdfsError::BadName(n));
            }
            if (0..n).any(|m| img.raw_entry(m).is_ok_and(|o| o.name == e.name)) {
                return Err(RdfsError::DuplicateName(n));
            }
            let end = e.offset.checked_add(e.size);
            if e.offset % PAGE != 0
                || e.offset < next
                || e.size > MAX_FILE_SIZE
                || end.is_none_or(|end| end > len)
            {
                return Err(RdfsError::BadExtent(n));
            }
            next = e.offset + e.size;
        }
        Ok(img)
    }

    fn raw_entry(&self, n: u32) -> Result<Entry, RdfsError> {
        let at = HEADER_LEN + n as usize * ENTRY_LEN;
        Entry::decode(&self.bytes[at..at + ENTRY_LEN], n)
    }

    /// Number of files.
    pub fn nr_files(&self) -> u32 {
        self.nr_files
    }

    /// The seed of generated files.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The image's length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the image is empty (never, once parsed: it has a header).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Entry `n` (validated by [`Image::parse`]).
    pub fn entry(&self, n: u32) -> Option<Entry> {
        (n < self.nr_files)
            .then(|| self.raw_entry(n).ok())
            .flatten()
    }

    /// File `n`'s name, borrowed from the image.
    pub fn name(&self, n: u32) -> Option<&'a str> {
        if n >= self.nr_files {
            return None;
        }
        let at = HEADER_LEN + n as usize * ENTRY_LEN;
        let raw = &self.bytes[at..at + NAME_LEN];
        let len = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&raw[..len]).ok()
    }

    /// The file called `name`.
    pub fn find(&self, name: &str) -> Option<u32> {
        (0..self.nr_files).find(|&n| self.entry(n).is_some_and(|e| e.name() == name))
    }

    /// File `n`'s bytes.
    pub fn data(&self, n: u32) -> Option<&'a [u8]> {
        let e = self.entry(n)?;
        self.bytes
            .get(e.offset as usize..(e.offset + e.size) as usize)
    }
}

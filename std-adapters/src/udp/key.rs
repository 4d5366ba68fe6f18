//! The cluster key and its file format.
//!
//! # Key file format
//!
//! A key file holds the key as **hexadecimal text**: 32 to 128 hex digits (16 to 64 bytes),
//! upper or lower case, with nothing else but optional ASCII whitespace (a trailing newline,
//! say) around them. Make one with
//!
//! ```text
//! openssl rand -hex 32 > cluster.key
//! ```
//!
//! or `head -c 32 /dev/urandom | xxd -p -c 64 > cluster.key`. Every node and every client of
//! a cluster must use the same file. Hex rather than raw bytes, because a text file survives
//! copying through terminals, editors and configuration tools, and because a raw file could
//! not tell a trailing newline from a key byte.
//!
//! The bounds: fewer than 16 bytes is refused, because HMAC-SHA256 is only as strong as its
//! key and 128 bits is the usual floor; more than 64 bytes is refused, because HMAC hashes a
//! key longer than SHA-256's 64-byte block down to 32 bytes anyway, so the extra length only
//! looks stronger. A file longer than [`KEY_FILE_BYTES_MAX`] is not read at all.
//!
//! # The demo key
//!
//! Without a key file, [`ClusterKey::load`] falls back to [`DEMO_KEY`], a published constant,
//! and prints a warning. It lets a local demo run without setup, and it authenticates
//! nothing: anyone who has read this documentation can forge frames under it.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use hmac::{Hmac, KeyInit};
use sha2::Sha256;

/// Fewest key bytes accepted.
pub const KEY_BYTES_MIN: usize = 16;

/// Most key bytes accepted (the SHA-256 block size).
pub const KEY_BYTES_MAX: usize = 64;

/// Largest key file read, in bytes (the hex digits plus generous room for whitespace).
pub const KEY_FILE_BYTES_MAX: usize = 4096;

/// The insecure key used when no key file is given: the 32 ASCII bytes
/// `tinyraft-insecure-demo-key-v1!!!` (hex `74696e79726166742d696e7365637572652d64656d6f2d6b65792d7631212121`).
///
/// It is public, so it provides no authentication at all. For local demos only.
pub const DEMO_KEY: &[u8; 32] = b"tinyraft-insecure-demo-key-v1!!!";

/// The secret shared by every node and client of a cluster, ready to compute HMAC-SHA256
/// tags.
///
/// It keeps the HMAC state after absorbing the key, so tagging a datagram starts from a copy
/// of it instead of hashing the key again. Its `Debug` output never shows key material.
#[derive(Clone)]
pub struct ClusterKey {
    mac: Hmac<Sha256>,
    insecure_demo: bool,
}

impl ClusterKey {
    /// A key from raw bytes: [`KEY_BYTES_MIN`] to [`KEY_BYTES_MAX`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < KEY_BYTES_MIN {
            return Err(KeyError::TooShort { bytes: bytes.len() });
        }
        if bytes.len() > KEY_BYTES_MAX {
            return Err(KeyError::TooLong { bytes: bytes.len() });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(bytes)
            .expect("HMAC accepts keys of any length");
        Ok(Self {
            mac,
            insecure_demo: bytes == DEMO_KEY,
        })
    }

    /// A key from the text of a key file (see the [module docs](self) for the format), as
    /// bytes or as a string.
    pub fn from_hex(text: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let text = text.as_ref();
        let digits = text.trim_ascii();
        if let Some(position) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
            // Position within the whole text, so it matches what an editor shows.
            let leading = text.len() - text.trim_ascii_start().len();
            return Err(KeyError::NotHex {
                position: leading + position,
                byte: digits[position],
            });
        }
        if digits.len() % 2 != 0 {
            return Err(KeyError::OddLength {
                digits: digits.len(),
            });
        }
        let bytes = digits.len() / 2;
        if bytes < KEY_BYTES_MIN {
            return Err(KeyError::TooShort { bytes });
        }
        if bytes > KEY_BYTES_MAX {
            return Err(KeyError::TooLong { bytes });
        }
        let mut key = [0u8; KEY_BYTES_MAX];
        for (out, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
            *out = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        let result = Self::from_bytes(&key[..bytes]);
        // Not a guarantee (the compiler may have copied it), just not leaving it lying around.
        key.fill(0);
        result
    }

    /// Reads a key file (see the [module docs](self) for the format).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let mut text = Vec::with_capacity(256);
        std::fs::File::open(path)
            .and_then(|f| f.take(KEY_FILE_BYTES_MAX as u64 + 1).read_to_end(&mut text))
            .map_err(|source| KeyError::Read { source })?;
        if text.len() > KEY_FILE_BYTES_MAX {
            return Err(KeyError::FileTooLarge);
        }
        let result = Self::from_hex(&text[..]);
        text.fill(0);
        result
    }

    /// The public [`DEMO_KEY`]. Prefer [`ClusterKey::load`], which warns about it.
    pub fn insecure_demo() -> Self {
        Self::from_bytes(DEMO_KEY).expect("the demo key has a valid length")
    }

    /// The key for a `--key-file` option: read from `key_file` if given, otherwise the
    /// [`DEMO_KEY`]. Prints a warning on standard error whenever the result is the demo key
    /// (also when a key file holds it), since it authenticates nothing.
    pub fn load(key_file: Option<&Path>) -> Result<Self, KeyError> {
        let key = match key_file {
            Some(path) => Self::from_file(path)?,
            None => Self::insecure_demo(),
        };
        if key.is_insecure_demo() {
            eprintln!(
                "warning: tinyraft is using the public demo cluster key; anyone can forge \
                 messages to this cluster. Pass a key file (e.g. `openssl rand -hex 32`) \
                 outside of local demos."
            );
        }
        Ok(key)
    }

    /// True if this is the public [`DEMO_KEY`].
    pub fn is_insecure_demo(&self) -> bool {
        self.insecure_demo
    }

    /// A fresh MAC keyed with this key.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterKey")
            .field("insecure_demo", &self.insecure_demo)
            .finish_non_exhaustive()
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => unreachable!("checked by is_ascii_hexdigit"),
    }
}

/// Why a cluster key could not be loaded.
#[derive(Debug)]
pub enum KeyError {
    /// The key file could not be read.
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// The key file is longer than [`KEY_FILE_BYTES_MAX`].
    FileTooLarge,
    /// The text has a byte other than hex digits between its leading and trailing whitespace.
    NotHex {
        /// Offset of the byte in the text (0-based).
        position: usize,
        /// The byte.
        byte: u8,
    },
    /// An odd number of hex digits (half a byte is missing).
    OddLength {
        /// How many hex digits there are.
        digits: usize,
    },
    /// Fewer than [`KEY_BYTES_MIN`] bytes.
    TooShort {
        /// How many bytes the key has.
        bytes: usize,
    },
    /// More than [`KEY_BYTES_MAX`] bytes.
    TooLong {
        /// How many bytes the key has.
        bytes: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { source } => write!(f, "cannot read the key file: {source}"),
            Self::FileTooLarge => write!(
                f,
                "the key file is larger than {KEY_FILE_BYTES_MAX} bytes; it should hold \
                 only the key as hex digits"
            ),
            Self::NotHex { position, byte } => write!(
                f,
                "the key must be written as hex digits, but byte {position} is {:?}; \
                 make a key with `openssl rand -hex 32`",
                char::from(*byte)
            ),
            Self::OddLength { digits } => write!(
                f,
                "the key has an odd number of hex digits ({digits}); each byte takes two"
            ),
            Self::TooShort { bytes } => write!(
                f,
                "the key is {bytes} bytes long; at least {KEY_BYTES_MIN} bytes \
                 ({} hex digits) are required",
                KEY_BYTES_MIN * 2
            ),
            Self::TooLong { bytes } => write!(
                f,
                "the key is {bytes} bytes long; at most {KEY_BYTES_MAX} bytes \
                 ({} hex digits) are used",
                KEY_BYTES_MAX * 2
            ),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    /// A directory of its own under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("tinyraft-key-test-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, contents: &[u8]) -> std::path::PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tag(key: &ClusterKey, data: &[u8]) -> Vec<u8> {
        let mut mac = key.mac();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 test case 2 uses a 4-byte key, below our floor, so use test case 1
    /// (20 bytes of 0x0b) and test case 6 (131 bytes, above our ceiling: checked refused).
    #[test]
    fn mac_is_hmac_sha256_rfc4231_case_1() {
        let key = ClusterKey::from_bytes(&[0x0b; 20]).unwrap();
        assert_eq!(
            tag(&key, b"Hi There"),
            unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert!(matches!(
            ClusterKey::from_bytes(&[0xaa; 131]),
            Err(KeyError::TooLong { bytes: 131 })
        ));
    }

    #[test]
    fn hex_with_whitespace_and_either_case() {
        let lower = ClusterKey::from_hex(b"000102030405060708090a0b0c0d0e0f\n").unwrap();
        let upper = ClusterKey::from_hex(b"  \t000102030405060708090A0B0C0D0E0F \r\n").unwrap();
        let raw = ClusterKey::from_bytes(&(0u8..16).collect::<Vec<_>>()).unwrap();
        assert_eq!(tag(&lower, b"m"), tag(&raw, b"m"));
        assert_eq!(tag(&upper, b"m"), tag(&raw, b"m"));
        assert!(!lower.is_insecure_demo());
    }

    #[test]
    fn bounds_on_key_length() {
        assert!(ClusterKey::from_hex([b'a'; 32]).is_ok());
        assert!(ClusterKey::from_hex([b'a'; 128]).is_ok());
        assert!(matches!(
            ClusterKey::from_hex([b'a'; 30]),
            Err(KeyError::TooShort { bytes: 15 })
        ));
        assert!(matches!(
            ClusterKey::from_hex([b'a'; 130]),
            Err(KeyError::TooLong { bytes: 65 })
        ));
        assert!(matches!(
            ClusterKey::from_hex(b""),
            Err(KeyError::TooShort { bytes: 0 })
        ));
        assert!(matches!(
            ClusterKey::from_hex(b"   \n"),
            Err(KeyError::TooShort { bytes: 0 })
        ));
        assert!(matches!(
            ClusterKey::from_bytes(&[1; 15]),
            Err(KeyError::TooShort { bytes: 15 })
        ));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = ClusterKey::from_hex(b"abcd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the key is 2 bytes long; at least 16 bytes (32 hex digits) are required"
        );
        let e = ClusterKey::from_hex([b'a'; 33]).unwrap_err();
        assert!(matches!(e, KeyError::OddLength { digits: 33 }));
        assert!(e.to_string().contains("odd number of hex digits (33)"));
        let e = ClusterKey::from_hex(b"\n  0011 2233445566778899aabbccddeeff").unwrap_err();
        assert!(matches!(
            e,
            KeyError::NotHex {
                position: 7,
                byte: b' '
            }
        ));
        assert!(e.to_string().contains("byte 7 is ' '"), "{e}");
        let e = ClusterKey::from_hex(b"0x00112233445566778899aabbccddeeff").unwrap_err();
        assert!(matches!(
            e,
            KeyError::NotHex {
                position: 1,
                byte: b'x'
            }
        ));
    }

    #[test]
    fn key_files() {
        let dir = TempDir::new("files");
        let good = dir.file("good.key", b"00112233445566778899aabbccddeeff00112233\n");
        assert!(ClusterKey::from_file(&good).is_ok());
        assert!(ClusterKey::load(Some(&good)).is_ok());

        let short = dir.file("short.key", b"0011223344\n");
        let e = ClusterKey::from_file(&short).unwrap_err();
        assert!(matches!(e, KeyError::TooShort { bytes: 5 }));

        // Raw random bytes are not a key file: refused, not silently used as text.
        let raw = dir.file("raw.key", &[0x00, 0xff, 0x10, 0x80, 0x7f, 0x41, 0x42, 0x43]);
        assert!(matches!(
            ClusterKey::from_file(&raw),
            Err(KeyError::NotHex { position: 0, .. })
        ));

        let big = dir.file("big.key", &vec![b' '; KEY_FILE_BYTES_MAX + 1]);
        assert!(matches!(
            ClusterKey::from_file(&big),
            Err(KeyError::FileTooLarge)
        ));

        let missing = dir.0.join("missing.key");
        let e = ClusterKey::from_file(&missing).unwrap_err();
        assert!(
            matches!(&e, KeyError::Read { source } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(ClusterKey::load(Some(&missing)).is_err());
    }

    #[test]
    fn demo_key_is_flagged() {
        assert!(ClusterKey::insecure_demo().is_insecure_demo());
        assert!(ClusterKey::load(None).unwrap().is_insecure_demo());
        // The hex spelling in the docs is the demo key too, and is flagged when loaded.
        let documented = "74696e79726166742d696e7365637572652d64656d6f2d6b65792d7631212121";
        let key = ClusterKey::from_hex(documented).unwrap();
        assert!(key.is_insecure_demo());
        assert_eq!(tag(&key, b"m"), tag(&ClusterKey::insecure_demo(), b"m"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = ClusterKey::from_hex(b"41414141414141414141414141414141").unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "ClusterKey { insecure_demo: false, .. }");
    }
}

//! Secrets at rest: AES-256-GCM (RustCrypto's `aes-gcm`) with a random 96-bit nonce
//! per sealed value, keys from a key file.
//!
//! The key file (`--secrets-key-file` / `RUNE_SECRETS_KEY_FILE`) holds one key per
//! line, `<id> <base64 of 32 bytes>`; `#` comments and blank lines are ignored. The
//! first key seals, every key opens — Kubernetes' EncryptionConfiguration — so a key
//! is rotated by putting a new one first, `rune secrets rotate-key`, then removing
//! the old line. A sealed value names the id of its key, so a missing key is an
//! error naming it, never garbage; the AEAD tag makes a wrong key (or a value moved
//! to another secret: the secret's `<ns>/<name>` is the associated data) an error
//! too. Nothing here ever returns plaintext it could not authenticate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::model::source::Sealed;

/// Why a secret could not be sealed or opened, or a key file not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "no secrets key file: give --secrets-key-file or RUNE_SECRETS_KEY_FILE \
             (`rune secrets generate-key` makes a key line)"
    )]
    NoKeyFile,
    #[error("secrets key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error(
        "{what} is encrypted with key {key_id:?}, which the key file {path} does not hold \
         (it holds {held})"
    )]
    MissingKey {
        what: String,
        key_id: String,
        path: String,
        held: String,
    },
    #[error(
        "{what} does not decrypt with key {key_id:?} of {path}: a different key under the \
         same id, or the stored value was altered"
    )]
    WrongKey {
        what: String,
        key_id: String,
        path: String,
    },
    #[error("{what}: the stored ciphertext is malformed: {why}")]
    Malformed { what: String, why: String },
}

/// The keys of one key file, in order: the first seals.
pub struct Keyring {
    path: String,
    keys: Vec<(String, Key<Aes256Gcm>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("ids", &self.ids())
            .finish()
    }
}

/// A key id: 1-64 characters of letters, digits, '-', '_' and '.'.
fn check_id(id: &str) -> Result<(), String> {
    let ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if id.is_empty() || id.len() > 64 || !ok {
        return Err(format!(
            "key id {id:?} must be 1-64 characters of letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

impl Keyring {
    /// Reads a key file; `None` (no file given) is [`SecretsError::NoKeyFile`].
    pub fn load(path: Option<&Path>) -> Result<Keyring, SecretsError> {
        let path = path.ok_or(SecretsError::NoKeyFile)?;
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SecretsError::KeyFile {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        Keyring::parse(&shown, &text)
    }

    /// Parses key file text; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Keyring, SecretsError> {
        let bad = |line: usize, why: String| SecretsError::KeyFile {
            path: path.to_string(),
            why: format!("line {line}: {why}"),
        };
        let mut keys: Vec<(String, Key<Aes256Gcm>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(n, "expected `<id> <base64 of 32 bytes>`".into()));
            };
            check_id(id).map_err(|e| bad(n, e))?;
            let bytes = B64
                .decode(b64)
                .map_err(|e| bad(n, format!("key {id:?} is not base64: {e}")))?;
            if bytes.len() != 32 {
                return Err(bad(
                    n,
                    format!(
                        "key {id:?} is {} bytes; AES-256 needs 32 (`rune secrets generate-key`)",
                        bytes.len()
                    ),
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(bad(n, format!("key id {id:?} appears twice")));
            }
            keys.push((id.to_string(), *Key::<Aes256Gcm>::from_slice(&bytes)));
        }
        if keys.is_empty() {
            return Err(SecretsError::KeyFile {
                path: path.to_string(),
                why: "holds no key (expected lines `<id> <base64 of 32 bytes>`)".into(),
            });
        }
        Ok(Keyring {
            path: path.to_string(),
            keys,
        })
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The id new values are sealed with.
    pub fn primary(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `data` (as JSON) with the first key; `aad` binds it to its secret.
    pub fn seal(&self, aad: &str, data: &BTreeMap<String, String>) -> Sealed {
        let (id, key) = &self.keys[0];
        let cipher = Aes256Gcm::new(key);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plaintext = serde_json::to_vec(data).expect("a map of strings serializes");
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message under 64 GiB");
        Sealed {
            key_id: id.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        }
    }

    /// Opens a sealed value; `what` names the secret in errors.
    pub fn open(
        &self,
        what: &str,
        aad: &str,
        sealed: &Sealed,
    ) -> Result<BTreeMap<String, String>, SecretsError> {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == sealed.key_id) else {
            return Err(SecretsError::MissingKey {
                what: what.to_string(),
                key_id: sealed.key_id.clone(),
                path: self.path.clone(),
                held: self.ids().join(", "),
            });
        };
        let malformed = |why: String| SecretsError::Malformed {
            what: what.to_string(),
            why,
        };
        let nonce = B64
            .decode(&sealed.nonce)
            .map_err(|e| malformed(format!("nonce: {e}")))?;
        if nonce.len() != 12 {
            return Err(malformed(format!("nonce is {} bytes, not 12", nonce.len())));
        }
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|e| malformed(format!("ciphertext: {e}")))?;
        let plaintext = Aes256Gcm::new(key)
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::WrongKey {
                what: what.to_string(),
                key_id: sealed.key_id.clone(),
                path: self.path.clone(),
            })?;
        // serde_json's message may quote the value it met: only where, never what.
        serde_json::from_slice(&plaintext).map_err(|e| {
            malformed(format!(
                "the decrypted data is not a map of text values ({:?} error at line {} \
                 column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// The associated data that binds a sealed value to its secret: `<ns>/<name>`.
pub fn aad(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A new key line, `<id> <base64 of 32 random bytes>`, for a key file.
pub fn generate_key_line(id: &str) -> Result<String, String> {
    check_id(id)?;
    let key = Aes256Gcm::generate_key(OsRng);
    Ok(format!("{id} {}", B64.encode(key)))
}

/// `--secrets-key-file` / `RUNE_SECRETS_KEY_FILE`, shared by the CLI and the agent.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyFileArgs {
    /// Key file for secrets: lines `<id> <base64 of 32 bytes>`; the first key
    /// encrypts, every key decrypts (see `rune secrets --help`).
    #[arg(
        long,
        env = "RUNE_SECRETS_KEY_FILE",
        value_name = "PATH",
        global = true
    )]
    pub secrets_key_file: Option<PathBuf>,
}

impl KeyFileArgs {
    pub fn keyring(&self) -> Result<Keyring, SecretsError> {
        Keyring::load(self.secrets_key_file.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[&str]) -> Keyring {
        Keyring::parse("keys", &lines.join("\n")).unwrap()
    }

    fn data() -> BTreeMap<String, String> {
        BTreeMap::from([("password".to_string(), "hunter2".to_string())])
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let line = generate_key_line("k1").unwrap();
        let r = ring(&["# a comment", "", &line]);
        let a = r.seal("ns/db", &data());
        let b = r.seal("ns/db", &data());
        assert_eq!(a.key_id, "k1");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("hunter2"));
        assert_eq!(r.open("secret db", "ns/db", &a).unwrap(), data());
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (old, new) = (
            generate_key_line("old").unwrap(),
            generate_key_line("new").unwrap(),
        );
        let sealed_old = ring(&[&old]).seal("ns/db", &data());
        let both = ring(&[&new, &old]);
        assert_eq!(both.primary(), "new");
        assert_eq!(both.open("db", "ns/db", &sealed_old).unwrap(), data());
        let resealed = both.seal("ns/db", &data());
        assert_eq!(resealed.key_id, "new");
        // The old key retired: what was resealed still opens, the rest names its key.
        let only_new = ring(&[&new]);
        assert_eq!(only_new.open("db", "ns/db", &resealed).unwrap(), data());
        let e = only_new
            .open("secret db", "ns/db", &sealed_old)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("encrypted with key \"old\", which the key file keys does not hold")
        );
    }

    #[test]
    fn a_wrong_key_or_a_moved_value_is_an_error_not_garbage() {
        let sealed = ring(&[&generate_key_line("k").unwrap()]).seal("ns/db", &data());
        let other = ring(&[&generate_key_line("k").unwrap()]);
        let e = other.open("secret db", "ns/db", &sealed).unwrap_err();
        assert!(matches!(e, SecretsError::WrongKey { .. }), "{e}");
        let right = ring(&[&generate_key_line("k").unwrap()]);
        let sealed = right.seal("ns/db", &data());
        assert!(matches!(
            right.open("secret x", "ns/other", &sealed),
            Err(SecretsError::WrongKey { .. })
        ));
        let mut cut = sealed.clone();
        cut.nonce = "AAAA".into();
        assert!(matches!(
            right.open("s", "ns/db", &cut),
            Err(SecretsError::Malformed { .. })
        ));
    }

    /// Authentic data of the wrong shape is an error that does not quote it.
    #[test]
    fn data_that_is_not_a_map_is_refused_without_quoting_it() {
        let r = ring(&[&generate_key_line("k").unwrap()]);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let msg = br#""hunter2""#;
        let ciphertext = Aes256Gcm::new(&r.keys[0].1)
            .encrypt(&nonce, Payload { msg, aad: b"ns/db" })
            .unwrap();
        let sealed = Sealed {
            key_id: "k".into(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        };
        let e = r.open("secret ns/db", "ns/db", &sealed).unwrap_err();
        assert!(matches!(e, SecretsError::Malformed { .. }), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn key_file_errors_name_the_line() {
        for (text, says) in [
            ("", "holds no key"),
            ("k1", "line 1: expected `<id> <base64"),
            ("k1 !!!", "line 1: key \"k1\" is not base64"),
            ("k1 AAAA", "key \"k1\" is 3 bytes; AES-256 needs 32"),
            ("k/1 AAAA", "key id \"k/1\" must be"),
        ] {
            let e = Keyring::parse("f", text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let l = generate_key_line("a").unwrap();
        let e = Keyring::parse("f", &format!("{l}\n{l}")).unwrap_err();
        assert!(e.to_string().contains("line 2: key id \"a\" appears twice"));
        assert_eq!(
            Keyring::load(None).unwrap_err(),
            SecretsError::NoKeyFile,
            "no file given"
        );
        let e = Keyring::load(Some(Path::new("/nonexistent/keys"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/keys"));
        assert!(!format!("{:?}", ring(&[&l])).contains(l.split(' ').nth(1).unwrap()));
    }
}

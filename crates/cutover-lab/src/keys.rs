//! The TSIG keys of the lab's zones. A key the runbook reads from a file is read from that
//! file when it exists, else a fresh secret is written there (a BIND key block, mode 0600).
//! A key read from an environment variable is taken from the lab's environment when set, else
//! written to a file in the lab whose contents the variable must hold for the run. Secrets are
//! never printed: the manifest names files and variables only.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cutover_dns::TsigKey;
use cutover_lang::{SecretRef, TsigAlgorithm};
use serde::{Deserialize, Serialize};

use crate::blueprint::KeyBlueprint;
use crate::error::LabError;

/// Where a lab key is, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    pub algorithm: String,
    /// The file holding the key (a BIND key block), when there is one.
    pub file: Option<PathBuf>,
    /// The environment variable the runbook reads the key from.
    pub env: Option<String>,
    /// Whether the lab created the secret (rather than reading an existing one).
    pub created: bool,
}

impl KeyInfo {
    /// What a person must do before `cutover run` for this key, if anything.
    pub fn instruction(&self) -> Option<String> {
        match (&self.env, &self.file) {
            (Some(var), Some(file)) => Some(format!("export {var}=\"$(cat {})\"", file.display())),
            _ => None,
        }
    }
}

/// Loads the key, creating its secret when there is none; `keys_dir` holds the files of keys
/// that the runbook reads from the environment.
pub fn load_or_create(key: &KeyBlueprint, keys_dir: &Path) -> Result<(TsigKey, KeyInfo), LabError> {
    let algorithm = key.algorithm;
    let mut info = KeyInfo {
        name: key.name.clone(),
        algorithm: key.algorithm.as_str().to_string(),
        file: None,
        env: None,
        created: false,
    };
    let file = match &key.secret {
        SecretRef::Env(var) => {
            info.env = Some(var.clone());
            if std::env::var_os(var).is_some() {
                let tsig = TsigKey::from_env(var, Some(&key.name), Some(algorithm))?;
                return Ok((tsig, info));
            }
            keys_dir.join(format!("{}.key", key.name))
        }
        SecretRef::File(path) => path.clone(),
    };
    if !file.exists() {
        write_new_key(&file, key)?;
        info.created = true;
    }
    let tsig = TsigKey::from_file(&file, Some(&key.name), Some(algorithm))?;
    info.file = Some(file);
    Ok((tsig, info))
}

/// Writes a fresh random secret as a BIND key block, readable by its owner only.
fn write_new_key(file: &Path, key: &KeyBlueprint) -> Result<(), LabError> {
    let length = match key.algorithm {
        TsigAlgorithm::HmacSha256 => 32,
        TsigAlgorithm::HmacSha384 => 48,
        TsigAlgorithm::HmacSha512 => 64,
    };
    let mut secret = vec![0u8; length];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut secret))
        .map_err(|err| LabError::io("cannot read random bytes from", "/dev/urandom", err))?;
    let block = format!(
        "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
        key.name,
        key.algorithm.as_str(),
        data_encoding::BASE64.encode(&secret)
    );
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| LabError::io("cannot create", parent, err))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .map_err(|err| LabError::io("cannot create key file", file, err))?;
    out.write_all(block.as_bytes())
        .map_err(|err| LabError::io("cannot write key file", file, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let blueprint = KeyBlueprint {
            name: "lab-update".into(),
            algorithm: TsigAlgorithm::HmacSha512,
            secret: SecretRef::File(dir.path().join("keys/lab.key")),
        };
        let (key, info) = load_or_create(&blueprint, dir.path()).unwrap();
        assert!(info.created);
        assert_eq!(key.name(), "lab-update");
        assert_eq!(key.algorithm(), cutover_dns::TsigAlgorithm::HmacSha512);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("keys/lab.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the key file is private");
        let (again, info) = load_or_create(&blueprint, dir.path()).unwrap();
        assert!(!info.created, "an existing key is reused");
        assert_eq!(again, key);
        assert!(!format!("{info:?}").contains("secret \""));
    }

    #[test]
    fn an_unset_environment_key_gets_a_file_and_an_instruction() {
        let dir = tempfile::tempdir().unwrap();
        let blueprint = KeyBlueprint {
            name: "k".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: SecretRef::Env("CUTOVER_LAB_TEST_UNSET_KEY".into()),
        };
        let (_, info) = load_or_create(&blueprint, dir.path()).unwrap();
        assert_eq!(info.file, Some(dir.path().join("k.key")));
        let instruction = info.instruction().unwrap();
        assert!(
            instruction.starts_with("export CUTOVER_LAB_TEST_UNSET_KEY=\"$(cat "),
            "{instruction}"
        );
    }
}

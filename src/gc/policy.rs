//! Per-artifactType policy: whether a referrer dies with its subject (hard) or is kept while it
//! has a root of its own (soft). Stored in `.ocistore/gc-policy.json`:
//!
//! ```json
//! {"default": "hard", "artifactTypes": {"application/spdx+json": "soft"}}
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a referrer relates to its subject's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The referrer dies with its subject, whatever roots it has (the default).
    #[default]
    Hard,
    /// The referrer is also kept while it has a root of its own (a tag or a pin).
    Soft,
}

/// The policy: a default mode and overrides by artifact type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Mode for artifact types not listed.
    #[serde(default)]
    pub default: Mode,
    /// Overrides by artifact type.
    #[serde(default, rename = "artifactTypes")]
    pub artifact_types: BTreeMap<String, Mode>,
}

/// The policy file's name inside `.ocistore/`.
pub const POLICY_FILE: &str = "gc-policy.json";

impl Policy {
    /// The mode of a referrer with this artifact type.
    pub fn mode(&self, artifact_type: Option<&str>) -> Mode {
        artifact_type
            .and_then(|t| self.artifact_types.get(t).copied())
            .unwrap_or(self.default)
    }

    /// Whether every artifact type gets the default mode, so that types need not be read.
    pub fn is_uniform(&self) -> bool {
        self.artifact_types.values().all(|m| *m == self.default)
    }

    /// Reads the policy file of a store; a missing file is the default policy.
    pub fn load(private_dir: &Path) -> Result<Policy> {
        let path = private_dir.join(POLICY_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::layout(&path, format!("invalid GC policy: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }
}

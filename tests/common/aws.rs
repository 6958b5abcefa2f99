//! AWS Secrets Manager as the primary backend (tests/rotation_aws.rs): `[backends.aws]` (a moto
//! server at `endpoint`, secrets under `prefix`) made the default backend of a [`World`].

#![cfg(feature = "aws")]

use super::{Run, World};
use rekey::record::SlotRecord;
use std::path::PathBuf;

/// Where the `aws` backend of a world stores its slots.
pub struct AwsTarget {
    pub endpoint: String,
    pub prefix: String,
}

/// Static fake credentials for moto (it ignores them); nothing from the real AWS chain.
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

impl World {
    /// `header()` plus `[backends.aws]`, made the default backend.
    pub fn header_aws(&self, t: &AwsTarget) -> String {
        format!(
            "{}\n[backends.aws]\ntype = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nprefix = \"{}\"\ntimeout = \"10s\"\n",
            self.header()
                .replacen("backend = \"local\"", "backend = \"aws\"", 1),
            t.endpoint,
            t.prefix
        )
    }

    /// Writes `inventory.toml` = `header_aws` + `slots`.
    pub fn inventory_aws(&self, t: &AwsTarget, slots: &str) -> PathBuf {
        self.inventory_raw(&format!("{}\n{slots}", self.header_aws(t)))
    }

    /// `rekey_env` with the fake AWS credentials added.
    pub async fn rekey_aws(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all: Vec<(&str, &str)> = AWS_TEST_ENV.to_vec();
        all.extend_from_slice(env);
        self.rekey_env(args, &all).await
    }

    pub fn aws_backend(&self, t: &AwsTarget) -> rekey::backend::aws::AwsBackend {
        let mut cfg = rekey::backend::aws::AwsBackendConfig::new("aws");
        cfg.endpoint_url = Some(t.endpoint.clone());
        cfg.prefix = t.prefix.clone();
        cfg.region = Some("us-east-1".into());
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                    aws_sdk_secretsmanager::config::Credentials::new(
                        "testing",
                        "testing",
                        None,
                        None,
                        "static-test",
                    ),
                ),
            )
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        rekey::backend::aws::AwsBackend::with_sdk_config(&cfg, sdk)
    }

    pub async fn record_aws(&self, t: &AwsTarget, slot: &str) -> Option<SlotRecord> {
        self.record_in(&self.aws_backend(t), slot).await
    }

    pub async fn records_aws(&self, t: &AwsTarget) -> Vec<SlotRecord> {
        self.records_in(&self.aws_backend(t)).await
    }

    /// [`super::consistency::assert_consistent`] over the slots stored in the `aws` backend.
    pub async fn assert_consistent_aws(&self, t: &AwsTarget, expect_slots: &[&str]) {
        self.assert_consistent_in(&self.aws_backend(t), expect_slots)
            .await
    }
}

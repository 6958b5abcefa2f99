//! The Secrets Manager client: the standard AWS credential chain (or a preset SDK
//! configuration), timeouts, the answer cap and the endpoint override, built on first use.

use super::AwsBackend;
use super::answer_cap;
use crate::error::{Error, Result};
use aws_sdk_secretsmanager::Client;
use std::time::Duration;

impl AwsBackend {
    pub(super) async fn client(&self) -> Result<&Client> {
        self.inner
            .client
            .get_or_try_init(|| async {
                let cfg = &self.inner.config;
                let sdk = match &self.inner.preset {
                    Some(s) => s.clone(),
                    None => {
                        let http = aws_smithy_http_client::Builder::new()
                            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                            ))
                            .build_https();
                        // The same timeouts for the credential chain's own calls (STS
                        // web identity, ECS), so no network call of the backend is unbounded.
                        let mut loader =
                            aws_config::defaults(aws_config::BehaviorVersion::latest())
                                .http_client(http)
                                .timeout_config(timeouts(cfg.timeout));
                        if let Some(r) = &cfg.region {
                            loader = loader.region(aws_config::Region::new(r.clone()));
                        }
                        loader.load().await
                    }
                };
                if sdk.region().is_none() && cfg.region.is_none() {
                    return Err(Error::config(format!(
                        "backend {}: no AWS region: set region in [backends.{}] or AWS_REGION",
                        cfg.name, cfg.name
                    )));
                }
                let mut b = aws_sdk_secretsmanager::config::Builder::from(&sdk)
                    .timeout_config(timeouts(cfg.timeout));
                if let Some(r) = &cfg.region {
                    b = b.region(aws_config::Region::new(r.clone()));
                }
                b = b.interceptor(answer_cap::AnswerCap);
                // Only Secrets Manager goes to the override; STS (web identity) does not.
                if let Some(e) = &cfg.endpoint_url {
                    b = b.endpoint_url(e.clone());
                }
                Ok(Client::from_conf(b.build()))
            })
            .await
    }
}

/// `timeout` for one operation, retries included; at most 5s of it to connect.
fn timeouts(timeout: Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
}

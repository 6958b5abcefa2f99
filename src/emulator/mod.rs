//! A Taegis-compatible API emulator (and, later, Cisco): the test server and the demo's platform.
//! (Placeholder on this branch; the real implementation lands from the `emu` branch.)

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `rekey emulator` options.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: SocketAddr,
}

pub async fn run(args: EmulatorArgs) -> crate::error::Result<()> {
    let _ = args;
    Err(crate::error::Error::config("the emulator is not built yet"))
}

#[derive(Serialize, Deserialize, Clone, Default, Debug)]
pub struct Seed {
    pub tenants: Vec<SeedTenant>,
}
#[derive(Serialize, Deserialize, Clone, Default, Debug)]
pub struct SeedTenant {
    pub id: String,
    pub parent: Option<String>,
    pub clients: Vec<SeedClient>,
}
#[derive(Serialize, Deserialize, Clone, Default, Debug)]
pub struct SeedClient {
    pub client_id: String,
    pub secret: String,
    pub name: String,
    pub roles: Vec<String>,
}
#[derive(Serialize, Deserialize, Clone, Default, Debug)]
pub struct Faults {}
pub struct EmulatorConfig {
    pub seed: Seed,
    pub faults: Faults,
    pub state_file: Option<PathBuf>,
    pub token_ttl: Duration,
}
pub struct EmulatorHandle;
impl EmulatorHandle {
    pub fn url(&self) -> String {
        String::new()
    }
    pub async fn shutdown(self) {}
}
pub async fn start(
    _config: EmulatorConfig,
    _listen: SocketAddr,
) -> crate::error::Result<EmulatorHandle> {
    Err(crate::error::Error::config("the emulator is not built yet"))
}

//! What every step of a unit's run shares: the store, the dataset's keys,
//! the settings, who runs, the clock and the injected fault ([`Ctx`]), and
//! the way CPU-bound work leaves the async runtime ([`blocking`]).

use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::UnitError;
use crate::fault::Fault;
use crate::keys::Keys;
use crate::settings::Settings;

/// Everything a unit run needs.
pub(crate) struct Ctx<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub keys: &'a Keys,
    pub settings: &'a Settings,
    pub owner: &'a str,
    pub now_ms: &'a (dyn Fn() -> i64 + Send + Sync),
    pub fault: Option<Fault>,
}

impl Ctx<'_> {
    /// Stops here if this is the injected fault.
    pub(crate) fn check(&self, at: Fault) -> Result<(), UnitError> {
        if self.fault == Some(at) {
            Err(UnitError::Injected(at))
        } else {
            Ok(())
        }
    }
}

/// Runs CPU-bound work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UnitError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

//! The label sets the relay's metric families share.

use prometheus_client::encoding::EncodeLabelSet;

/// Label `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Reason {
    pub(super) reason: String,
}

impl Reason {
    pub(super) fn new(reason: &str) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Label `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Kind {
    pub(super) kind: String,
}

/// Label `limit`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabel {
    pub(super) limit: String,
}

impl LimitLabel {
    pub(super) fn new(limit: &str) -> Self {
        Self {
            limit: limit.into(),
        }
    }
}

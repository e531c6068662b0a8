//! Where a run can be made to stop as if its process died: one point after
//! each crash-safe step of the commit protocol (`plan.rs` lists the steps;
//! docs/compaction.md says why each is safe to crash after). Tests run a
//! unit to every [`Fault::ALL`] point, then run it again, and check that the
//! dataset ends the same.

use serde::Serialize;

/// Where a run can be made to stop as if it crashed (tests of crash safety).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// After the new files are staged, before the commit.
    AfterStaging,
    /// Right after the manifest is committed.
    AfterCommit,
    /// After the first superseded file is deleted.
    AfterFirstOldDelete,
    /// After the first staged file is copied into the partition.
    AfterFirstCopy,
    /// After the first folded raw object is deleted.
    AfterFirstRawDelete,
    /// With everything done but the lease release.
    BeforeRelease,
}

impl Fault {
    /// Every fault point, in protocol order.
    pub const ALL: [Fault; 6] = [
        Fault::AfterStaging,
        Fault::AfterCommit,
        Fault::AfterFirstOldDelete,
        Fault::AfterFirstCopy,
        Fault::AfterFirstRawDelete,
        Fault::BeforeRelease,
    ];
}

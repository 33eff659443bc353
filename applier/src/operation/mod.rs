//! One node operation — an update or an operator's rollback — as one table
//! of steps, shared by the first run and by crash recovery.
//!
//! An update is *gathered* ([`gather`]: every read of the network and of
//! the node's state, out comes a verified release and the node's facts),
//! *decided* ([`decide`]: pure — refuse, defer, nothing to do, or go), and
//! *run* ([`run::Run::drive`]: the table). A rollback is checked by its
//! command and then run by the same table.
//!
//! The table ([`table`]). The journal's step is written before the effects
//! that follow it; each move hands back the next. Recovery decides from the
//! step and where `current` points ([`table::decide`]) and enters the same
//! moves ([`table::Action::entry`]), with [`run::Resumed`] set:
//!
//! | journal step | forward move | on failure | after a crash |
//! |---|---|---|---|
//! | `planned` | update: [`Move::Fetch`]; rollback: [`Move::Switch`] | record `failed` | [`Move::Abandon`] |
//! | `fetching` | download, stage, keep the manifest → `staged` | record `failed` | [`Move::Abandon`] |
//! | `staged` | [`Move::Switch`]: turn, `pre_` hook, migrations, switch → `switched` (in place: restore point, converge → `verified`) | undo the migrations, record `failed`; a switch the journal could not record is switched back | `current` = target: [`Move::CheckLive`]; else [`Move::Abandon`] (in place: [`Move::CheckLive`]) |
//! | `switched` | [`Move::CheckLive`] by metadata → `verified` | [`Move::WayBack`], service untouched | as `staged`; the check is by content (in place: converge again) |
//! | `verified` | [`Move::GoLive`]: strategy, health gate, `post_` hook; record `success` | update: [`Move::WayBack`]; rollback: record `failed`, stays switched | as `staged`; blue-green first asks whether the candidate already serves |
//! | `committed` | close the journal | — | [`Move::Close`] |
//! | `rolling-back` | [`Move::WayBack`]: `pre_rollback`, switch back, migrations' downs, old release into service, `post_rollback`; record `rolled-back` | — | [`Move::WayBack`] resumed, asking what serves |
//!
//! Every service strategy (none, restart, reload, blue-green) and both
//! install modes go through the same moves: the strategy is a column of
//! [`crate::lifecycle::Transition`], the install mode a column of
//! [`Move::Switch`] and [`Move::CheckLive`].

pub mod decide;
pub mod error;
mod fetch;
pub mod gather;
pub mod record;
pub mod run;
pub mod table;
mod way_back;

pub(crate) use fetch::held_contents;
pub use run::{Ended, Resumed, Run, Staging};
pub use table::{Action, Move};

//! Where the LB targets stand, for the Normal `Sync` Event on an Ingress
//! (`cluster::programmed`): the lowest desired version every target holds, and whether
//! any target refuses the route table or one of the Ingress's backends.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::cluster::{LbProgress, Progress};
use crate::sync::{Item, TargetStatus};
use podgate_core::model::UpstreamKey;

pub(crate) fn of(targets: Vec<Arc<Mutex<TargetStatus>>>) -> LbProgress {
    Arc::new(move |backends: &[UpstreamKey]| {
        let mut progress = Progress::default();
        for target in &targets {
            let status = target.lock();
            progress.programmed = Some(
                progress
                    .programmed
                    .map_or(status.programmed, |v| v.min(status.programmed)),
            );
            progress.targets.push(status.name.clone());
            progress.refused |= status.quarantined.iter().any(|q| match &q.item {
                Item::Routes => true,
                Item::Upstream(key) => backends.contains(key),
                Item::Certificate(_) => false,
            });
        }
        progress
    })
}

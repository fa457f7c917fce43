//! The thread dump as a pprof profile: one `threads/count` sample per distinct stack and label
//! set (thread state and name), so `go tool pprof -traces` groups "17 threads sleeping in
//! pthread_cond_wait".

use std::time::SystemTime;

use rprof_proto::{LabelSpec, Profile, ProfileBuilder};

use super::dump::ThreadDump;
use crate::profile::{LocationTable, PseudoFrame};

pub fn build(dump: &ThreadDump, taken: SystemTime) -> Profile {
    let mut builder = ProfileBuilder::new(&[("threads", "count")], ("threads", "count"), 1);
    builder.set_time_nanos(
        taken
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
    );
    builder.add_comment(&format!(
        "rprof-agent thread snapshot of PID {}, pause {} us",
        dump.pid,
        dump.pause.as_micros()
    ));
    if let Some(why) = &dump.stack_error {
        builder.add_comment(&format!("stacks unavailable: {why}"));
    }
    let mut table = LocationTable::new(&dump.modules, &mut builder);
    for thread in &dump.threads {
        let mut ids = table.user_stack(&mut builder, &thread.addresses);
        if !thread.has_stack {
            ids.push(table.pseudo_location(&mut builder, PseudoFrame::NoStack));
        } else if thread.truncated {
            ids.push(table.pseudo_location(&mut builder, PseudoFrame::Truncated));
        }
        let state = thread.info.state.to_string();
        let labels = [
            LabelSpec::str("state", &state),
            LabelSpec::str("thread", &thread.info.name),
        ];
        builder.add_sample(&ids, &[1], &labels);
    }
    builder.build()
}

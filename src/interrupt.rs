//! Ctrl-C (SIGINT) and SIGTERM: the first asks the run to stop cleanly (commit what is done,
//! write the checkpoint, mark the task resumable); a second one ends the process at once,
//! which loses nothing committed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static SEEN: AtomicBool = AtomicBool::new(false);

/// Installs the handlers. Until then the default action (ending the process) applies.
pub fn install() -> Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_default(signal, &SEEN).context("installing signal handlers")?;
        signal_hook::flag::register(signal, &SEEN).context("installing signal handlers")?;
        signal_hook::flag::register_usize(signal, &RECEIVED, signal as usize).context("installing signal handlers")?;
    }
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal as i32),
    }
}

pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

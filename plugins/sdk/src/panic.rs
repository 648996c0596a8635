//! Forwards panics to the host log. wasm32-unknown-unknown aborts on panic (an
//! `unreachable` trap, which the host turns into a `failed` verdict); the hook runs
//! before that abort, so the admin sees file, line and message instead of a bare
//! trap.

use std::panic::PanicHookInfo;
use std::sync::Once;

/// The host truncates anyway; this keeps a runaway message from costing memory.
const MAX_PANIC_MESSAGE: usize = 4096;

pub(crate) fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(report)));
}

fn report(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    let mut text = match info.location() {
        Some(at) => format!(
            "plugin panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("plugin panicked: {message}"),
    };
    if text.len() > MAX_PANIC_MESSAGE {
        let mut end = MAX_PANIC_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    crate::host::log::error(&text);
}

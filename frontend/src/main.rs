fn main() {
    // Without the hook a panic in wasm shows as "unreachable executed" with
    // no message; with it the console says what went wrong and where.
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(trackside_frontend::App);
}

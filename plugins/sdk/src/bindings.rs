//! Generated from plugins/wit. The only module that names wit-bindgen; everything
//! else converts to the SDK's own types in `guest` and `host`.

wit_bindgen::generate!({
    path: "../wit",
    world: "inspector",
    export_macro_name: "__export_strongroom_inspector",
    pub_export_macro: true,
    default_bindings_module: "strongroom_plugin_sdk::bindings",
    runtime_path: "strongroom_plugin_sdk::__wit_bindgen::rt",
});

//! The JSON body of `POST /users` and `POST /login`, parsed as the handler parses it.
#![no_main]

use courier_logic::fuzzing::{parse_body, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_body(Route::Register, data);
    let _ = parse_body(Route::Login, data);
});

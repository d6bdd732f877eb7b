//! The JSON body of POST /password, parsed as the handler parses it.
#![no_main]

use courier_logic::fuzzing::{parse_body, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_body(Route::Password, data);
});

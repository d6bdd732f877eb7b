//! The query strings of the read routes (`/online/users`, `/online/rooms`,
//! `/presence`, `/users/{uid}/messages`), parsed as the handlers parse them.
#![no_main]

use courier_logic::fuzzing::{parse_query, QueryRoute};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for route in [
        QueryRoute::OnlineUsers,
        QueryRoute::TopRooms,
        QueryRoute::Presence,
        QueryRoute::Messages,
    ] {
        let _ = parse_query(route, data);
    }
});

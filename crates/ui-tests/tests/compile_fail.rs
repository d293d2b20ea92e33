//! Misusing `#[cached]` is a compile error that says what to do, at the right place.
//! The expected messages are in `tests/ui/*.stderr` (`TRYBUILD=overwrite` rewrites them).

#[test]
fn misuse_of_cached_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

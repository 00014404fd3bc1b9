//! Misuse of `#[kt::actor]` is a compile error that says what to write instead.
//! The expected messages are the `.stderr` files beside each case in `tests/ui/`
//! (regenerate with `TRYBUILD=overwrite cargo test --test compile_errors` and review).

#[test]
fn misuse_of_the_actor_macro_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

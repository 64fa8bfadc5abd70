//! jobnet CNI plugin.
pub fn run() -> i32 {
    0
}

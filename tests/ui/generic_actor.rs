#[kt::actor]
pub struct Cache<T> {
    items: Vec<T>,
}

fn main() {}

pub struct Cache<T> {
    items: Vec<T>,
}

#[kt::actor]
impl<T: Send + Sync + 'static> Cache<T> {
    pub fn new() -> Self {
        Cache { items: Vec::new() }
    }
}

fn main() {}

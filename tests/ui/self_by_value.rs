#[kt::actor]
pub struct Counter {
    value: u64,
}

#[kt::actor]
impl Counter {
    pub fn new() -> Self {
        Counter { value: 0 }
    }

    pub fn into_value(self) -> u64 {
        self.value
    }
}

fn main() {}

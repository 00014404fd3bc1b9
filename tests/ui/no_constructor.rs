#[kt::actor]
pub struct Counter {
    value: u64,
}

#[kt::actor]
impl Counter {
    pub fn get(&self) -> u64 {
        self.value
    }
}

fn main() {}

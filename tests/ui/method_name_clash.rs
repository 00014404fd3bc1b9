#[kt::actor]
pub struct Worker {
    label: String,
}

#[kt::actor]
impl Worker {
    pub fn new(label: String) -> Self {
        Worker { label }
    }

    pub fn name(&self) -> String {
        self.label.clone()
    }
}

fn main() {}

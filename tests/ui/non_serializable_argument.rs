pub struct Connection {
    fd: i32,
}

#[kt::actor]
pub struct Pool {
    size: usize,
}

#[kt::actor]
impl Pool {
    pub fn new(size: usize) -> Self {
        Pool { size }
    }

    pub fn adopt(&mut self, connection: Connection) -> usize {
        let _ = connection.fd;
        self.size
    }
}

fn main() {}

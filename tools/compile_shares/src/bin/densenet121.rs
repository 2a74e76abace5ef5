fn main() {
    println!("{}", compile_shares::exercise::<constnet::DenseNet121<f32>>());
}

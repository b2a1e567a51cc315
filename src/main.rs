use computenest::api;

fn main() {
    for crd in api::all_crds() {
        print!("{}", api::crd_yaml(&crd).unwrap());
    }
}

//! Discovery documents are generated from the app's schema and advertise only what works.

use reqwest::StatusCode;

use crate::support::TestEnv;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_provider_config_schemas_and_resource_types() {
    let env = TestEnv::start().await;
    let spc = env.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, StatusCode::OK);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["bulk"]["supported"], true);
    assert_eq!(spc.body["filter"]["supported"], true);
    assert_eq!(spc.body["filter"]["maxResults"], 500);
    assert_eq!(spc.body["etag"]["supported"], true);
    assert_eq!(spc.body["authenticationSchemes"][0]["type"], "oauthbearertoken");

    let schemas = env.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 3, "User, Enterprise User and Group: {}", schemas.text);
    let user = env.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").await;
    assert_eq!(user.status, StatusCode::OK);
    let names: Vec<&str> =
        user.body["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"userName") && names.contains(&"emails"), "{names:?}");
    assert!(!names.contains(&"x509Certificates"), "only what the app supports is published: {names:?}");
    let enterprise = env.get(&format!("/Schemas/{ENTERPRISE}")).await;
    assert_eq!(enterprise.status, StatusCode::OK);
    env.get("/Schemas/urn:nope").await.assert_error(404, None);

    let types = env.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], 2);
    let user_type = env.get("/ResourceTypes/User").await;
    assert_eq!(user_type.body["endpoint"], "/Users");
    assert_eq!(user_type.body["schemaExtensions"][0]["schema"], ENTERPRISE);
    assert_eq!(env.get("/ResourceTypes/Group").await.body["endpoint"], "/Groups");
    env.get("/ResourceTypes/Device").await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_and_readiness() {
    let env = TestEnv::start().await;
    let health = env.client.get(format!("{}/healthz", env.admin())).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
    assert_eq!(body["apps"][0]["name"], "acme");
    // The tests' configuration turns health() off: /readyz says what it does not cover.
    assert_eq!(body["apps"][0]["readiness_covers_legacy"], false, "{body}");
    let warnings = body["apps"][0]["warnings"].to_string();
    assert!(warnings.contains("server.health_interval is 0s"), "{body}");
}

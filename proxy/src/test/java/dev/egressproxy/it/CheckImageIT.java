package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import dev.egressproxy.check.CheckCommand;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestPki;
import dev.egressproxy.testing.TestProxy;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * {@code egress-proxy check image} through real proxies to real TLS servers on loopback, every
 * name mapped by {@code connect-to}: a registry on {@code registry.test:5000} whose Bearer
 * challenge sends clients to a token service on another host ({@code auth.test}) and whose blobs
 * redirect to a CDN host ({@code cdn.test}); a registry with a Basic challenge
 * ({@code basic.test}); the credentials in a containers {@code auth.json}. The servers record
 * what they received and the tests assert it: which {@code Authorization} reached which host, which
 * manifests of an index were asked for, and that {@code Proxy-Authorization} stays with the proxy.
 * Proxies: one that allows every host, one without the token host, one that wants proxy
 * credentials ({@code auth.basic}), and (openssl permitting) one on a TLS port with credentials.
 */
class CheckImageIT {

    @TempDir
    static Path dir;

    static final String ALICE = "alice:s3cret";
    static final String BOB = "bob:builder";
    static final String CAROL_USER = "carol";
    static final String CAROL_PASSWORD = "p@ss word";
    static final String CAROL_IN_URL = "carol:p%40ss%20word";
    static final String ANON_TOKEN = "anon-token-1";
    static final String ALICE_TOKEN = "token-for-alice-2";
    static final String BEARER_CHALLENGE = "Bearer realm=\"https://auth.test/token\",service=\"registry.test:5000\"";

    // Two platforms sharing one layer, and the attestation entry BuildKit adds to an index.
    static final String AMD_CONFIG = digest("amd64 config");
    static final String ARM_CONFIG = digest("arm64 config");
    static final String SHARED_LAYER = digest("shared layer");
    static final String AMD_LAYER = digest("amd64 layer");
    static final String ARM_LAYER = digest("arm64 layer");
    static final String ATTESTATION_LAYER = digest("attestation layer");
    static final String AMD_MANIFEST_JSON = imageManifest("application/vnd.oci.image.manifest.v1+json", AMD_CONFIG, SHARED_LAYER,
            AMD_LAYER);
    static final String ARM_MANIFEST_JSON = imageManifest("application/vnd.oci.image.manifest.v1+json", ARM_CONFIG, SHARED_LAYER,
            ARM_LAYER);
    static final String ATTESTATION_JSON = imageManifest("application/vnd.oci.image.manifest.v1+json", digest("att config"),
            ATTESTATION_LAYER);
    static final String AMD_MANIFEST = digest(AMD_MANIFEST_JSON);
    static final String ARM_MANIFEST = digest(ARM_MANIFEST_JSON);
    static final String ATTESTATION = digest(ATTESTATION_JSON);
    static final String INDEX_JSON = """
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "%s", "size": 1,
               "platform": {"architecture": "amd64", "os": "linux"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "%s", "size": 1,
               "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "%s", "size": 1,
               "platform": {"architecture": "unknown", "os": "unknown"},
               "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "%s"}}
            ]}
            """.formatted(AMD_MANIFEST, ARM_MANIFEST, ATTESTATION, AMD_MANIFEST);
    static final String CLI_CONFIG = digest("cli config");
    static final String CLI_LAYER = digest("cli layer");
    static final String CLI_MANIFEST_JSON = imageManifest("application/vnd.docker.distribution.manifest.v2+json", CLI_CONFIG,
            CLI_LAYER);

    static TestCerts certs;
    static Origin registry;
    static Origin tokens;
    static Origin basicRegistry;
    static Origin cdn;
    static TestProxy proxy;
    static TestProxy withoutTokenHost;
    static TestProxy authProxy;
    static AccessLogCapture log;
    static Path authJson;
    static final List<String> serverErrors = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        certs = TestCerts.generate(dir, List.of("registry.test", "auth.test", "basic.test", "cdn.test"));
        registry = Origin.https(certs.serverContext());
        tokens = Origin.https(certs.serverContext());
        basicRegistry = Origin.https(certs.serverContext());
        cdn = Origin.https(certs.serverContext());

        Set<String> bearers = Set.of("Bearer " + ANON_TOKEN, "Bearer " + ALICE_TOKEN);
        registry.route("/v2/", guarded(bearers, BEARER_CHALLENGE, ex -> json(ex, "application/json", "{}")));
        registry.route("/v2/team/app/manifests/v1", guarded(bearers, BEARER_CHALLENGE,
                ex -> json(ex, "application/vnd.oci.image.index.v1+json", INDEX_JSON)));
        for (String[] m : List.of(new String[] {AMD_MANIFEST, AMD_MANIFEST_JSON}, new String[] {ARM_MANIFEST, ARM_MANIFEST_JSON},
                new String[] {ATTESTATION, ATTESTATION_JSON})) {
            registry.route("/v2/team/app/manifests/" + m[0], guarded(bearers, BEARER_CHALLENGE,
                    ex -> json(ex, "application/vnd.oci.image.manifest.v1+json", m[1])));
        }
        for (String blob : List.of(AMD_CONFIG, ARM_CONFIG, SHARED_LAYER, AMD_LAYER, ARM_LAYER, ATTESTATION_LAYER)) {
            // As registry.redhat.io does: a 302 to a signed URL on the CDN, which wants no registry credentials.
            registry.route("/v2/team/app/blobs/" + blob, guarded(bearers, BEARER_CHALLENGE, ex -> {
                ex.getResponseHeaders().add("Location", "https://cdn.test/blobs/" + blob + "?X-Amz-Signature=abc123&expires=1");
                Origin.send(ex, 302, new byte[0]);
            }));
            cdn.route("/blobs/" + blob, CheckImageIT::oneByte);
        }
        tokens.route("/token", ex -> {
            String a = ex.getRequestHeaders().getFirst("Authorization");
            if (a == null) {
                json(ex, "application/json", "{\"access_token\": \"" + ANON_TOKEN + "\", \"expires_in\": 300}");
            } else if (a.equals(basic(ALICE))) {
                json(ex, "application/json", "{\"token\": \"" + ALICE_TOKEN + "\", \"expires_in\": 300}");
            } else {
                Origin.send(ex, 401, "{\"errors\": [{\"code\": \"UNAUTHORIZED\"}]}".getBytes(StandardCharsets.UTF_8));
            }
        });
        Set<String> bob = Set.of(basic(BOB));
        String basicChallenge = "Basic realm=\"basic.test\"";
        basicRegistry.route("/v2/", guarded(bob, basicChallenge, ex -> json(ex, "application/json", "{}")));
        basicRegistry.route("/v2/tools/cli/manifests/2.0", guarded(bob, basicChallenge,
                ex -> json(ex, "application/vnd.docker.distribution.manifest.v2+json", CLI_MANIFEST_JSON)));
        for (String blob : List.of(CLI_CONFIG, CLI_LAYER)) {
            basicRegistry.route("/v2/tools/cli/blobs/" + blob, guarded(bob, basicChallenge, CheckImageIT::oneByte));
        }

        authJson = dir.resolve("auth.json");
        Files.writeString(authJson, """
                {
                  "auths": {
                    "registry.test:5000": {"auth": "%s"},
                    "registry.test:5000/other": {"auth": "%s"},
                    "https://basic.test/v1/": {"auth": "%s"}
                  }
                }
                """.formatted(b64(ALICE), b64("mallory:not-for-team"), b64(BOB)));

        Path users = dir.resolve("users");
        Files.writeString(users, CAROL_USER + ":" + BCrypt.hashpw(CAROL_PASSWORD, BCrypt.gensalt("$2y", 4)) + "\n");
        log = new AccessLogCapture();
        proxy = TestProxy.start(world(List.of("registry.test:5000", "auth.test", "basic.test", "cdn.test"), ""));
        withoutTokenHost = TestProxy.start(world(List.of("registry.test:5000", "basic.test", "cdn.test"), ""));
        authProxy = TestProxy.start(world(List.of("registry.test:5000", "auth.test", "basic.test", "cdn.test"),
                "auth.basic.users-file = \"" + users + "\"\n"));
    }

    /** A proxy config: {@code hosts} allowed, every test name mapped to its server. */
    static String world(List<String> hosts, String extra) {
        return """
                allowlist { presets = [], hosts = [%s] }
                destinations.connect-to {
                  "registry.test:5000" = "127.0.0.1:%d"
                  "auth.test:443" = "127.0.0.1:%d"
                  "basic.test:443" = "127.0.0.1:%d"
                  "cdn.test:443" = "127.0.0.1:%d"
                }
                """.formatted(String.join(", ", hosts.stream().map(h -> "\"" + h + "\"").toList()), registry.port(),
                tokens.port(), basicRegistry.port(), cdn.port()) + extra;
    }

    @AfterAll
    static void stop() {
        for (AutoCloseable c : Arrays.asList(proxy, withoutTokenHost, authProxy, registry, tokens, basicRegistry, cdn, log)) {
            if (c != null) {
                try {
                    c.close();
                } catch (Exception e) {
                    serverErrors.add("close: " + e);
                }
            }
        }
    }

    @BeforeEach
    void forget() {
        for (Origin o : List.of(registry, tokens, basicRegistry, cdn)) {
            o.seen.clear();
        }
    }

    @AfterEach
    void serversHadNoErrors() {
        assertThat(serverErrors).isEmpty();
    }

    // ---- the servers' handlers

    /** Answers with {@code then} when the request carries one of {@code accepted}, else 401 with {@code challenge}. */
    static HttpHandler guarded(Set<String> accepted, String challenge, HttpHandler then) {
        return ex -> {
            try {
                String a = ex.getRequestHeaders().getFirst("Authorization");
                if (a == null || !accepted.contains(a)) {
                    ex.getResponseHeaders().add("WWW-Authenticate", challenge);
                    json(ex, "application/json", "{\"errors\": [{\"code\": \"UNAUTHORIZED\"}]}", 401);
                    return;
                }
                then.handle(ex);
            } catch (Exception | Error e) {
                serverErrors.add(ex.getRequestURI() + ": " + e);
                throw e;
            }
        };
    }

    static void json(HttpExchange ex, String type, String body) throws java.io.IOException {
        json(ex, type, body, 200);
    }

    static void json(HttpExchange ex, String type, String body, int status) throws java.io.IOException {
        ex.getResponseHeaders().add("Content-Type", type);
        Origin.send(ex, status, body.getBytes(StandardCharsets.UTF_8));
    }

    /** A blob's first byte, as a server answers {@code Range: bytes=0-0}; anything else is a test failure. */
    static void oneByte(HttpExchange ex) throws java.io.IOException {
        if (!"bytes=0-0".equals(ex.getRequestHeaders().getFirst("Range"))) {
            serverErrors.add(ex.getRequestURI() + ": Range " + ex.getRequestHeaders().getFirst("Range"));
        }
        ex.getResponseHeaders().add("Content-Range", "bytes 0-0/1000");
        Origin.send(ex, 206, new byte[] {'x'});
    }

    // ---- helpers

    static String digest(String text) {
        try {
            return "sha256:" + HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static String imageManifest(String mediaType, String config, String... layers) {
        StringBuilder s = new StringBuilder("{\"schemaVersion\": 2, \"mediaType\": \"" + mediaType + "\", \"config\": "
                + "{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"" + config + "\", \"size\": 1}, \"layers\": [");
        for (int i = 0; i < layers.length; i++) {
            s.append(i == 0 ? "" : ", ").append("{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"")
                    .append(layers[i]).append("\", \"size\": 1000}");
        }
        return s.append("]}").toString();
    }

    static String b64(String s) {
        return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.UTF_8));
    }

    static String basic(String userPass) {
        return "Basic " + b64(userPass);
    }

    record Run(int status, String out, String err) {
        String all() {
            return out + err;
        }
    }

    static Run check(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        List<String> words = new ArrayList<>(List.of("image"));
        words.addAll(List.of(args));
        int status = CheckCommand.run(null, words, Map.of(), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /** {@code check image REF} through {@code proxyUrl} trusting the test registries' certificate, with {@code more}. */
    static Run checkImage(String ref, String proxyUrl, String... more) {
        List<String> args = new ArrayList<>(List.of(ref, "--proxy", proxyUrl, "--ca-file", certs.certPem().toString(),
                "--timeout", "10s"));
        args.addAll(List.of(more));
        return check(args.toArray(String[]::new));
    }

    static String via(TestProxy p) {
        return "http://127.0.0.1:" + p.port();
    }

    static List<String> paths(Origin o) {
        return o.seen.stream().map(Origin.Seen::path).toList();
    }

    static List<String> pathsWith(Origin o, String prefix) {
        return paths(o).stream().filter(p -> p.startsWith(prefix)).toList();
    }

    static String line(String out, String start) {
        return out.lines().filter(l -> l.startsWith(start)).findFirst().orElse("(no line for " + start + " in:\n" + out + ")");
    }

    /** Every header value any of the origins received. */
    static List<String> headerValues(Origin o, String name) {
        return o.seen.stream().map(s -> s.header(name)).toList();
    }

    // ---- (a) Bearer token from another host

    @Test
    void bearerChallengeGetsAnAnonymousTokenFromTheRealmHostAndTheRegistrySeesIt() {
        Run r = checkImage("registry.test:5000/team/app:v1", via(proxy));
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("ok    /v2/ ping: 401, token from auth.test").contains("ok    token: anonymous")
                .contains("PASS: a pull of registry.test:5000/team/app:v1 through " + via(proxy) + " would work");
        assertThat(line(r.out(), "auth.test:443")).contains("auth").contains("admitted").contains("200");

        assertThat(tokens.seen).hasSize(1);
        Origin.Seen token = tokens.seen.get(0);
        assertThat(token.header("Authorization")).isNull();
        assertThat(token.path()).startsWith("/token?").contains("service=registry.test%3A5000")
                .contains("scope=repository%3Ateam%2Fapp%3Apull").doesNotContain("account=");
        assertThat(token.header("Host")).isEqualTo("auth.test");

        // The ping goes out bare; everything after it carries the token.
        assertThat(registry.seen.get(0).path()).isEqualTo("/v2/");
        assertThat(registry.seen.get(0).header("Authorization")).isNull();
        assertThat(registry.seen.get(0).header("Host")).isEqualTo("registry.test:5000");
        assertThat(registry.seen.subList(1, registry.seen.size())).isNotEmpty()
                .allSatisfy(s -> assertThat(s.header("Authorization")).as(s.path()).isEqualTo("Bearer " + ANON_TOKEN));
        assertThat(headerValues(cdn, "Authorization")).isNotEmpty().containsOnlyNulls();
    }

    @Test
    void bearerTokenWithTheAuthFileLoginAndNoCredentialReachesTheCdn() {
        Run r = checkImage("registry.test:5000/team/app:v1", via(proxy), "--authfile", authJson.toString());
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("ok    token: with the credentials of alice from the auth file");

        // The token service got alice's login (the registry.test:5000 entry, not the more specific one of another repository).
        assertThat(tokens.seen).hasSize(1);
        assertThat(tokens.seen.get(0).header("Authorization")).isEqualTo(basic(ALICE));
        assertThat(tokens.seen.get(0).path()).contains("account=alice").contains("scope=repository%3Ateam%2Fapp%3Apull");

        // The registry saw only the token, never the password; the ping went out bare.
        assertThat(registry.seen.get(0).header("Authorization")).isNull();
        assertThat(registry.seen.subList(1, registry.seen.size()))
                .allSatisfy(s -> assertThat(s.header("Authorization")).as(s.path()).isEqualTo("Bearer " + ALICE_TOKEN));
        assertThat(pathsWith(registry, "/v2/team/app/blobs/")).hasSize(5);

        // (e) Every blob was redirected to the CDN host, which was asked once per blob with no Authorization at all.
        assertThat(paths(cdn)).hasSize(5).allMatch(p -> p.startsWith("/blobs/sha256:") && p.contains("X-Amz-Signature=abc123"));
        assertThat(cdn.seen).allSatisfy(s -> {
            assertThat(s.header("Authorization")).isNull();
            assertThat(s.header("Host")).isEqualTo("cdn.test");
            assertThat(s.headers().values().stream().flatMap(List::stream))
                    .noneMatch(v -> v.contains(ALICE_TOKEN) || v.contains(b64(ALICE)) || v.contains(ANON_TOKEN));
        });
        assertThat(line(r.out(), "cdn.test:443")).contains("blob").contains("admitted").contains("206");
        assertThat(r.out()).contains("ok    blob " + SHARED_LAYER.substring(0, 19) + ": registry.test:5000 -> cdn.test:443: 206");
    }

    @Test
    void aTokenServiceRefusingTheLoginIsNamedWithTheUser() throws Exception {
        Path wrong = dir.resolve("wrong-auth.json");
        Files.writeString(wrong, "{\"auths\": {\"registry.test:5000\": {\"auth\": \"" + b64("alice:wrong") + "\"}}}");
        Run r = checkImage("registry.test:5000/team/app:v1", via(proxy), "--authfile", wrong.toString());
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(r.out()).contains("FAIL  token: auth.test answered 401 Unauthorized (with the credentials of alice from the auth file)");
        assertThat(tokens.seen.get(0).header("Authorization")).isEqualTo(basic("alice:wrong"));
        assertThat(pathsWith(registry, "/v2/team/app/manifests/")).isEmpty();
    }

    // ---- (b) Basic challenge

    @Test
    void basicChallengeSendsTheAuthFileLoginToTheRegistry() {
        Run r = checkImage("basic.test/tools/cli:2.0", via(proxy), "--authfile", authJson.toString());
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("ok    /v2/ ping: 401, Basic credentials of bob from the auth file")
                .contains("ok    manifest 2.0: config + 1 layers");
        assertThat(paths(basicRegistry)).containsExactly("/v2/", "/v2/tools/cli/manifests/2.0", "/v2/tools/cli/blobs/" + CLI_CONFIG,
                "/v2/tools/cli/blobs/" + CLI_LAYER);
        assertThat(basicRegistry.seen.get(0).header("Authorization")).isNull();
        assertThat(basicRegistry.seen.subList(1, 4)).allSatisfy(s -> assertThat(s.header("Authorization")).isEqualTo(basic(BOB)));
        assertThat(tokens.seen).isEmpty();
    }

    @Test
    void basicChallengeWithoutAnAuthFileSaysSo() {
        Run r = checkImage("basic.test/tools/cli:2.0", via(proxy));
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(r.out()).contains("FAIL  /v2/ ping: 401: the registry wants credentials (Basic) and no --authfile was given");
        assertThat(paths(basicRegistry)).containsExactly("/v2/");
    }

    // ---- (c) the token host outside the allowlist

    @Test
    void aTokenHostOutsideTheAllowlistIsNamedAndFailsTheCheck() {
        Run r = checkImage("registry.test:5000/team/app:v1", via(withoutTokenHost));
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(r.out()).contains("pull needs auth.test:443, not in the allowlist")
                .contains("FAIL  token: token service auth.test:443 not reached")
                .contains("FAIL: a pull of registry.test:5000/team/app:v1 through " + via(withoutTokenHost) + " would fail");
        assertThat(line(r.out(), "auth.test:443")).contains("auth").contains("denied")
                .contains("auth.test:443 is not in the egress allowlist (host_not_allowlisted)");
        assertThat(tokens.seen).isEmpty();
        assertThat(paths(registry)).containsExactly("/v2/");

        Run json = checkImage("registry.test:5000/team/app:v1", via(withoutTokenHost), "--json");
        assertThat(json.status()).isEqualTo(CheckCommand.EXIT_FAILED);
        @SuppressWarnings("unchecked")
        Map<String, Object> doc = (Map<String, Object>) CheckHostsIT.parse(json.out());
        assertThat(doc).containsEntry("pull_works", false)
                .containsEntry("needs", List.of("pull needs auth.test:443, not in the allowlist"));
    }

    // ---- (d) an index with two platforms and an attestation

    @Test
    void everyPlatformOfAnIndexIsCheckedButNotItsAttestation() {
        Run r = checkImage("registry.test:5000/team/app:v1", via(proxy));
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("ok    manifest v1: a list of 3; checking [linux/amd64, linux/arm64/v8]")
                .contains("ok    manifest linux/amd64: config + 2 layers").contains("ok    manifest linux/arm64/v8: config + 2 layers");
        assertThat(pathsWith(registry, "/v2/team/app/manifests/")).containsExactly("/v2/team/app/manifests/v1",
                "/v2/team/app/manifests/" + AMD_MANIFEST, "/v2/team/app/manifests/" + ARM_MANIFEST);
        // The shared layer once; the attestation's blobs never.
        assertThat(pathsWith(registry, "/v2/team/app/blobs/")).containsExactlyInAnyOrder(
                "/v2/team/app/blobs/" + AMD_CONFIG, "/v2/team/app/blobs/" + SHARED_LAYER, "/v2/team/app/blobs/" + AMD_LAYER,
                "/v2/team/app/blobs/" + ARM_CONFIG, "/v2/team/app/blobs/" + ARM_LAYER);
        assertThat(registry.seen).allSatisfy(s -> assertThat(s.path()).doesNotContain(ATTESTATION).doesNotContain(ATTESTATION_LAYER));
        // The Accept header offers the index and manifest types.
        assertThat(registry.seen.stream().filter(s -> s.path().contains("/manifests/")).map(s -> s.header("Accept")))
                .allSatisfy(a -> assertThat(a).contains("application/vnd.oci.image.index.v1+json")
                        .contains("application/vnd.docker.distribution.manifest.v2+json"));
    }

    @Test
    void withPlatformOnlyThatPlatformsManifestAndBlobsAreChecked() {
        Run r = checkImage("registry.test:5000/team/app:v1", via(proxy), "--platform", "linux/arm64");
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("ok    manifest v1: a list of 3; checking [linux/arm64/v8]");
        assertThat(pathsWith(registry, "/v2/team/app/manifests/")).containsExactly("/v2/team/app/manifests/v1",
                "/v2/team/app/manifests/" + ARM_MANIFEST);
        assertThat(pathsWith(registry, "/v2/team/app/blobs/")).containsExactly("/v2/team/app/blobs/" + ARM_CONFIG,
                "/v2/team/app/blobs/" + SHARED_LAYER, "/v2/team/app/blobs/" + ARM_LAYER);
        assertThat(paths(cdn)).hasSize(3);

        Run none = checkImage("registry.test:5000/team/app:v1", via(proxy), "--platform", "linux/s390x");
        assertThat(none.status()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(none.out()).contains("FAIL  platforms: the list has no manifest for linux/s390x; it has "
                + "[linux/amd64, linux/arm64/v8, unknown/unknown]");

        Run bad = checkImage("registry.test:5000/team/app:v1", via(proxy), "--platform", "arm64");
        assertThat(bad.status()).isEqualTo(CheckCommand.EXIT_USAGE);
        assertThat(bad.err()).contains("--platform 'arm64' is not os/arch[/variant], e.g. linux/amd64");
    }

    // ---- (f) a proxy that wants credentials

    @Test
    void proxyCredentialsInTheProxyUrlAreSentToTheProxyAndNoFurther() {
        String url = "http://" + CAROL_IN_URL + "@127.0.0.1:" + authProxy.port();
        Run r = checkImage("registry.test:5000/team/app:v1", url, "--authfile", authJson.toString());
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
        assertThat(r.out()).contains("through http://carol:***@127.0.0.1:" + authProxy.port()).doesNotContain("p@ss")
                .doesNotContain("%40ss");
        // Every tunnel was opened as carol: the proxy's access log names her for each host.
        for (String target : List.of("registry.test:5000", "auth.test:443", "cdn.test:443")) {
            await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream()
                    .anyMatch(l -> l.contains("user=" + CAROL_USER) && l.contains("target=" + target) && l.contains("status=200")));
        }
        for (Origin o : List.of(registry, tokens, cdn)) {
            assertThat(o.seen).isNotEmpty().allSatisfy(s -> assertThat(s.header("Proxy-Authorization")).isNull());
        }
    }

    @Test
    void aWrongProxyPasswordIsA407NamingTheProxyNotTheRegistry() {
        double before = authFailures("bad_password");
        String url = "http://carol:wrong-pass@127.0.0.1:" + authProxy.port();
        Run r = checkImage("registry.test:5000/team/app:v1", url);
        assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(r.out()).contains("FAIL  proxy: the proxy at http://carol:***@127.0.0.1:" + authProxy.port()
                + " refused the credentials of user carol: 407 proxy authentication required (auth_required) for registry.test:5000")
                .doesNotContain("wrong-pass").doesNotContain("pull needs registry.test");
        // The registry is not blamed: it was never asked, so there is no host table at all.
        assertThat(r.out()).doesNotContain("HOST ").doesNotContain("registry.test:5000  ");
        assertThat(registry.seen).isEmpty();
        await().atMost(Duration.ofSeconds(10)).until(() -> authFailures("bad_password") == before + 1);

        Run none = checkImage("registry.test:5000/team/app:v1", via(authProxy));
        assertThat(none.status()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(none.out()).contains("FAIL  proxy: the proxy at " + via(authProxy) + " wants a user name and password: "
                + "407 proxy authentication required (auth_required) for registry.test:5000; write them in the proxy URL, "
                + "--proxy http://USER:PASSWORD@127.0.0.1:" + authProxy.port());
    }

    static double authFailures(String reason) {
        var c = authProxy.registry.find(ProxyMetrics.AUTH_FAILURES).tag("reason", reason).counter();
        return c == null ? 0 : c.count();
    }

    // ---- a proxy port that speaks TLS

    @Test
    void anHttpsProxyIsReachedOverTlsWithItsCaAndTheCredentialsInsideTheTls() throws Exception {
        TestPki pki = TestPki.create(dir, "proxy");
        TestPki.Issued cert = pki.server("proxy-server");
        try (TestProxy tlsProxy = TestProxy.start(world(List.of("registry.test:5000", "auth.test", "cdn.test"),
                "listen.tls { certificate = \"" + cert.cert() + "\", private-key = \"" + cert.key() + "\" }\n"
                        + "auth.basic.users-file = \"" + dir.resolve("users") + "\"\n"))) {
            String url = "https://" + CAROL_IN_URL + "@127.0.0.1:" + tlsProxy.port();
            Run r = checkImage("registry.test:5000/team/app:v1", url, "--proxy-cacert", pki.caCert().toString());
            assertThat(r.status()).as(r.all()).isEqualTo(CheckCommand.EXIT_OK);
            assertThat(r.out()).contains("through https://carol:***@127.0.0.1:" + tlsProxy.port());
            assertThat(pathsWith(registry, "/v2/team/app/blobs/")).hasSize(5);
            // Every request of the walk went through this proxy's TLS port: ping, token, 3 manifests, 5 blobs, 5 CDN hops.
            await().atMost(Duration.ofSeconds(10)).until(() -> tlsProxy.registry.find(ProxyMetrics.REQUESTS)
                    .tags("kind", "connect", "decision", "allowed").counters().stream().mapToDouble(c -> c.count()).sum() == 15);

            // The JDK's trust store does not know the proxy's CA.
            Run untrusted = checkImage("registry.test:5000/team/app:v1", url);
            assertThat(untrusted.status()).isEqualTo(CheckCommand.EXIT_FAILED);
            assertThat(untrusted.out()).contains("FAIL  proxy: TLS with the proxy at https://carol:***@127.0.0.1:" + tlsProxy.port()
                    + " failed: certificate not trusted (its issuer is not in the trust store); pass the proxy's CA with --proxy-cacert");

            // http:// to the TLS port: the proxy closes, and the check says what to write instead.
            Run plain = checkImage("registry.test:5000/team/app:v1", "http://" + CAROL_IN_URL + "@127.0.0.1:" + tlsProxy.port());
            assertThat(plain.status()).isEqualTo(CheckCommand.EXIT_FAILED);
            assertThat(plain.out()).contains("FAIL  proxy: the proxy at http://carol:***@127.0.0.1:" + tlsProxy.port()
                    + " gave no HTTP answer to CONNECT registry.test:5000: ")
                    .contains("(if its port speaks TLS, listen.tls, write the proxy as https://127.0.0.1:" + tlsProxy.port() + ")");

            // A port that wants a client certificate: the check has none to present, and says so in the proxy step.
            try (TestProxy mutual = TestProxy.start(world(List.of("registry.test:5000"),
                    "listen.tls { certificate = \"" + cert.cert() + "\", private-key = \"" + cert.key() + "\", client-ca = \""
                            + pki.caCert() + "\" }\n"))) {
                Run noCert = checkImage("registry.test:5000/team/app:v1", "https://127.0.0.1:" + mutual.port(), "--proxy-cacert",
                        pki.caCert().toString());
                assertThat(noCert.status()).isEqualTo(CheckCommand.EXIT_FAILED);
                assertThat(line(noCert.out(), "FAIL  proxy: ")).contains("https://127.0.0.1:" + mutual.port())
                        .containsAnyOf("certificate_required", "bad_certificate", "handshake_failure");
            }

            Run misuse = checkImage("registry.test:5000/team/app:v1", via(proxy), "--proxy-cacert", pki.caCert().toString());
            assertThat(misuse.status()).isEqualTo(CheckCommand.EXIT_USAGE);
            assertThat(misuse.err()).contains("--proxy-cacert is for a proxy that speaks TLS: write it as https://127.0.0.1:" + proxy.port());
        }
    }
}

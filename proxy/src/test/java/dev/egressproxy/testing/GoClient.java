package dev.egressproxy.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Builds the small Go net/http client in {@code src/test/resources/sni-go-client} ({@code
 * sni-go-client PROXY_URL CA_PEM_FILE URL}: GETs URL through the proxy, which may be an
 * {@code https://} URL, trusting only the CAs in the file for the origin and the proxy alike, and
 * prints the status and the body). Skips the test when {@code go} is not installed (fails it in
 * CI: {@link Required}).
 */
public final class GoClient {

    private GoClient() {
    }

    /** Builds the client into {@code dir} and returns the binary. */
    public static Path build(Path dir) throws Exception {
        Processes.Result version;
        try {
            version = Processes.run(List.of("go", "version"), null, 30);
        } catch (IOException e) {
            version = null;
        }
        Required.program(version != null && version.exitCode() == 0,
                "go is not installed, so the Go client case is skipped (scripts/install-test-deps.sh installs golang-go)");
        Path work = Files.createDirectories(dir.resolve("go"));
        Path source = work.resolve("main.go");
        try (InputStream in = GoClient.class.getResourceAsStream("/sni-go-client/main.go")) {
            Files.copy(in, source);
        }
        Path binary = work.resolve("sni-go-client");
        Processes.Result build = Processes.run(List.of("go", "build", "-o", binary.toString(), source.toString()), null, 300,
                // The build cache is shared by every run of the build (transports, test classes).
                Map.of("GOCACHE", Processes.projectRoot().resolve("proxy/target/go-build-cache").toString(), "GOPATH", work.resolve("gopath").toString(),
                        "GOPROXY", "off", "GOFLAGS", "", "CGO_ENABLED", "0", "HOME", work.toString()));
        assertThat(build.exitCode()).as(build.output()).isZero();
        return binary;
    }
}

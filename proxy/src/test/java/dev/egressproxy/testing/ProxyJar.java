package dev.egressproxy.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * The proxy jar that tests run as a child JVM: always a copy, never the build's
 * {@code target/egress-proxy.jar} itself. A JVM reads classes from its jar as it first needs
 * them, so a jar rewritten under a running proxy (an {@code mvn package} in the same tree
 * meanwhile) breaks it, up to a crash (SIGBUS in libzip) or a request that fails on a class that
 * can no longer be read.
 */
public final class ProxyJar {

    private static Path shared;

    private ProxyJar() {
    }

    /** The jar the build made ({@code egress.proxy.jar}, which Failsafe sets). */
    public static Path built() {
        return Path.of(System.getProperty("egress.proxy.jar", "target/egress-proxy.jar"));
    }

    /** {@code source} copied to {@code dir}/egress-proxy.jar; returns the copy. */
    public static Path copy(Path source, Path dir) throws IOException {
        Path copy = dir.resolve("egress-proxy.jar");
        Files.copy(source, copy, StandardCopyOption.REPLACE_EXISTING);
        return copy;
    }

    /**
     * One copy of the built jar for this test JVM, made at first use in a temporary directory that
     * goes when the JVM exits (with whatever a child wrote beside the jar, a CDS archive say).
     */
    public static synchronized Path shared() {
        if (shared == null) {
            try {
                Path dir = Files.createTempDirectory("egress-proxy-jar");
                Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(dir)));
                shared = copy(built(), dir);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return shared;
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // Best effort at exit: a temporary directory.
        }
    }
}

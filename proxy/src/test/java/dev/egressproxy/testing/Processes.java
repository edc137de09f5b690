package dev.egressproxy.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Runs real programs (promtool, curl, the proxy jar) for tests and captures what they print. */
public final class Processes {

    private Processes() {
    }

    /** What a finished program printed and its exit status. */
    public record Result(int exitCode, String output) {
    }

    /** Runs {@code command} with {@code stdin}, waiting at most {@code timeoutSeconds}. */
    public static Result run(List<String> command, String stdin, long timeoutSeconds) throws Exception {
        return run(command, stdin, timeoutSeconds, Map.of());
    }

    /** Runs {@code command} as {@link #run(List, String, long)} does, with {@code env} added to its environment. */
    public static Result run(List<String> command, String stdin, long timeoutSeconds, Map<String, String> env)
            throws Exception {
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        builder.environment().putAll(env);
        Process p = builder.start();
        if (stdin != null) {
            p.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
        }
        p.getOutputStream().close();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IllegalStateException(command + " did not finish within " + timeoutSeconds + "s");
        }
        return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
    }

    /** Whether {@code command} is a program on the PATH. */
    public static boolean onPath(String command) throws Exception {
        return run(List.of("sh", "-c", "command -v " + command), null, 30).exitCode() == 0;
    }

    /** The repository root (the parent of the proxy module). */
    public static Path projectRoot() {
        String root = System.getProperty("egress.project.root");
        return root != null ? Path.of(root) : Path.of("..").toAbsolutePath().normalize();
    }

    /** Two ports that were free a moment ago and differ (the kernel may hand out one twice). */
    public static int[] twoFreePorts() throws IOException {
        int a = freePort();
        int b = freePort();
        while (b == a) {
            b = freePort();
        }
        return new int[] {a, b};
    }

    /** A port that was free a moment ago, for programs that cannot be told to pick one. */
    public static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}

package dev.egressproxy.server;

import dev.egressproxy.config.ConfigException;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.ProxyMetrics;
import java.io.IOException;
import java.nio.file.ClosedWatchServiceException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reloads the configuration file when it changes (a watch on its directory and on
 * {@code presets/} beside it) or on request (SIGHUP). A new config that does not validate is
 * refused and the running one stays in force; either way the outcome is logged and counted in
 * {@code config_reloads_total{result}}. Watching the directory rather than the file is what makes
 * Kubernetes ConfigMap updates work: the kubelet swaps a {@code ..data} symlink, and the file itself
 * never sees a write. A change is applied once the directory has been quiet for a short moment, and
 * only if the content really differs, so an editor's several writes make one reload.
 */
public final class ConfigReloader implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(ConfigReloader.class);
    private static final long DEBOUNCE_MILLIS = 300;

    private final Path file;
    private final Map<String, String> env;
    private final ProxyServer server;
    private final ProxyMetrics metrics;
    private final ScheduledExecutorService executor = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "egress-config-reload");
        t.setDaemon(true);
        return t;
    });
    private WatchService watcher;
    private Thread watchThread;
    private ScheduledFuture<?> pending;
    private byte[] lastDigest;

    /** {@code file} is the operator's config file; {@code null} means the shipped defaults. */
    public ConfigReloader(Path file, Map<String, String> env, ProxyServer server, ProxyMetrics metrics) {
        this.file = file == null ? null : file.toAbsolutePath();
        this.env = env;
        this.server = server;
        this.metrics = metrics;
        this.lastDigest = digest();
    }

    /** Starts watching the file's directory (and its presets directory). */
    public ConfigReloader watch() throws IOException {
        if (file == null) {
            return this;
        }
        watcher = file.getFileSystem().newWatchService();
        register(file.getParent());
        register(file.getParent().resolve("presets"));
        watchThread = new Thread(this::watchLoop, "egress-config-watch");
        watchThread.setDaemon(true);
        watchThread.start();
        log.info("watching {} for changes", file);
        return this;
    }

    private void register(Path dir) throws IOException {
        if (Files.isDirectory(dir)) {
            dir.register(watcher, StandardWatchEventKinds.ENTRY_CREATE, StandardWatchEventKinds.ENTRY_MODIFY,
                    StandardWatchEventKinds.ENTRY_DELETE);
        }
    }

    private void watchLoop() {
        try {
            while (true) {
                WatchKey key = watcher.take();
                key.pollEvents();
                key.reset();
                scheduleCheck();
            }
        } catch (InterruptedException | ClosedWatchServiceException e) {
            // Closed: stop watching.
        }
    }

    private synchronized void scheduleCheck() {
        if (pending != null) {
            pending.cancel(false);
        }
        pending = executor.schedule(() -> {
            byte[] now = digest();
            if (!Arrays.equals(now, lastDigest)) {
                reload("file change");
            }
        }, DEBOUNCE_MILLIS, TimeUnit.MILLISECONDS);
    }

    /** Reloads on the reloader's thread (for signal handlers, which must not block). */
    public void reloadAsync(String trigger) {
        executor.execute(() -> reload(trigger));
    }

    /**
     * Loads, validates and applies the config now. Returns true if the new config is in force.
     */
    public synchronized boolean reload(String trigger) {
        byte[] digest = digest();
        ProxyConfig next;
        try {
            next = ConfigLoader.load(file, env);
        } catch (ConfigException e) {
            metrics.configReload(false);
            // Remember the broken content so that it is not retried until it changes again.
            lastDigest = digest;
            log.error("configuration reload ({}) refused, the running configuration stays in force: {}",
                    trigger, e.getMessage());
            return false;
        } catch (RuntimeException e) {
            metrics.configReload(false);
            lastDigest = digest;
            log.error("configuration reload ({}) failed, the running configuration stays in force", trigger, e);
            return false;
        }
        lastDigest = digest;
        List<String> restart = server.apply(next);
        metrics.configReload(true);
        log.info("configuration reloaded ({}) from {}: allowlist {} entries", trigger,
                file == null ? "shipped defaults" : file, next.allowlist().entries().size());
        if (!restart.isEmpty()) {
            log.warn("changed settings that take effect only after a restart: {}", String.join(", ", restart));
        }
        return true;
    }

    /** A digest of the config file and the presets beside it, to tell real changes from noise. */
    private byte[] digest() {
        if (file == null) {
            return new byte[0];
        }
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(readOrEmpty(file));
            Path presets = file.getParent().resolve("presets");
            if (Files.isDirectory(presets)) {
                try (Stream<Path> files = Files.list(presets)) {
                    for (Path p : files.sorted().toList()) {
                        md.update(p.getFileName().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                        md.update(readOrEmpty(p));
                    }
                }
            }
            return md.digest();
        } catch (IOException | NoSuchAlgorithmException e) {
            return new byte[0];
        }
    }

    private static byte[] readOrEmpty(Path p) {
        try {
            return Files.isRegularFile(p) ? Files.readAllBytes(p) : new byte[0];
        } catch (IOException e) {
            return new byte[0];
        }
    }

    @Override
    public void close() {
        try {
            if (watcher != null) {
                watcher.close();
            }
        } catch (IOException ignored) {
            // Closing anyway.
        }
        executor.shutdownNow();
    }
}

package dev.egressproxy.server;

import dev.egressproxy.config.ConfigException;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.ProxyMetrics;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.ClosedWatchServiceException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchEvent;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reloads the configuration file when it changes (a watch on its directory, on
 * {@code presets/} beside it and on the directories of the other files the configuration reads:
 * {@code auth.basic.users-file}, the {@code listen.tls} certificate, private key and client CA,
 * {@code upstream-proxy.password-file} and the files the config file includes) or on request
 * (SIGHUP). A new config that does not validate
 * (a half-written certificate, a key that is not the certificate's) is refused and the running one
 * stays in force, its TLS context included; either way the outcome is logged, counted in
 * {@code config_reloads_total{result}} and recorded for {@code /status} (with the refusal's
 * message). Watching the directory rather than the file is what makes Kubernetes ConfigMap and
 * Secret updates work: the kubelet swaps a {@code ..data} symlink, and the file itself never sees a write.
 *
 * <p>Only events that can change what is loaded count: the config file's own name, {@code ..data}
 * (and the first element of the file's symlink target, if it is one), {@code presets} itself, in
 * {@code presets/} the files of the presets in use, and in the directory of each other file read
 * the same three names for that file. Anything else written beside the config (a
 * log file, an editor's swap file) is ignored: it once re-armed the wait on every write and kept a
 * reload from ever happening. A relevant change is checked once no further relevant event came for
 * {@value #QUIET_MILLIS} ms, so an editor's several writes make one reload, but never later than
 * {@value #MAX_WAIT_MILLIS} ms after the first, so a file rewritten without pause is still applied.
 * The check reloads only if the content really differs.
 */
public final class ConfigReloader implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(ConfigReloader.class);
    private static final long QUIET_MILLIS = 300;
    private static final long MAX_WAIT_MILLIS = 1000;
    /** The symlink a Kubernetes ConfigMap volume swaps on every update. */
    private static final String CONFIG_MAP_DATA = "..data";
    private static final String PRESETS = "presets";

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
    /** Names in the config's directory whose change can change the config. */
    private Set<String> watchedNames = Set.of();
    /**
     * Files in {@code presets/} that count: those of the presets in force, or, after a refused
     * reload (whose presets are unknown), null for all of them.
     */
    private volatile Set<String> presetFiles;
    /** The files besides the config and its presets that the configuration in force reads. */
    private volatile ReadFiles readFiles;
    private final Set<Path> watchedDirs = new HashSet<>();
    /** A check is scheduled (guarded by this). */
    private boolean armed;
    private long firstEvent;
    private long lastEvent;
    private byte[] lastDigest;

    /** {@code file} is the operator's config file; {@code null} means the shipped defaults. */
    public ConfigReloader(Path file, Map<String, String> env, ProxyServer server, ProxyMetrics metrics) {
        this.file = file == null ? null : file.toAbsolutePath();
        this.env = env;
        this.server = server;
        this.metrics = metrics;
        this.presetFiles = presetFiles(server.liveConfig());
        this.readFiles = ReadFiles.of(server.liveConfig());
        this.lastDigest = digest();
        server.status().configFile(this.file);
    }

    /**
     * The files besides the config and its presets that a configuration reads (users file, TLS
     * files, parent password file), absolute: they are watched and digested like it, as a Secret's
     * rotated certificate or password must apply without a signal; and for each of their
     * directories the names in it whose change can change one of them.
     */
    private record ReadFiles(List<Path> files, Map<Path, Set<String>> names) {

        static ReadFiles of(ProxyConfig config) {
            List<Path> files = filesOf(config);
            Map<Path, Set<String>> names = new HashMap<>();
            for (Path f : files) {
                names.computeIfAbsent(f.getParent(), d -> new HashSet<>()).addAll(linkNames(f));
            }
            names.replaceAll((d, n) -> Set.copyOf(n));
            return new ReadFiles(files, Map.copyOf(names));
        }
    }

    /**
     * The files {@code config} was read from besides the config file and its presets: those its
     * settings name, and those the config file included.
     */
    private static List<Path> filesOf(ProxyConfig config) {
        List<Path> files = new ArrayList<>();
        if (config.auth().enabled()) {
            files.add(config.auth().users().path());
        }
        ProxyConfig.ListenTls tls = config.listen().tls();
        if (tls.enabled()) {
            files.add(tls.certificate());
            files.add(tls.privateKey());
            if (tls.clientCa() != null) {
                files.add(tls.clientCa());
            }
        }
        if (config.upstreamProxy().passwordFile() != null) {
            files.add(config.upstreamProxy().passwordFile());
        }
        files.addAll(config.reload().includes());
        return files.stream().map(Path::toAbsolutePath).distinct().toList();
    }

    /**
     * The names in {@code f}'s directory whose change can change what {@code f} reads: its own
     * name, {@code ..data}, and the first element of its target if it is a symlink through a
     * directory beside it ({@code ..data/tls.crt}, or a hand-made {@code current/tls.crt}).
     */
    private static Set<String> linkNames(Path f) {
        Set<String> names = new HashSet<>(List.of(f.getFileName().toString(), CONFIG_MAP_DATA));
        try {
            if (Files.isSymbolicLink(f)) {
                Path target = Files.readSymbolicLink(f);
                if (!target.isAbsolute() && target.getNameCount() > 1) {
                    names.add(target.getName(0).toString());
                }
            }
        } catch (IOException | UnsupportedOperationException e) {
            // Its own name and ..data still count.
        }
        return names;
    }

    private static Set<String> presetFiles(ProxyConfig config) {
        return config.presetsInUse().stream().map(p -> p + ".conf").collect(Collectors.toUnmodifiableSet());
    }

    /** Starts watching the file's directory (and its presets directory). */
    public ConfigReloader watch() throws IOException {
        if (file == null) {
            return this;
        }
        // A file reached through a link in the same directory (a ConfigMap's "..data/x.conf",
        // or a hand-made "current/x.conf") changes when that link is swapped.
        Set<String> names = new HashSet<>(linkNames(file));
        names.add(PRESETS);
        watchedNames = Set.copyOf(names);
        watcher = file.getFileSystem().newWatchService();
        register(file.getParent());
        register(presetsDir());
        registerReadFileDirs();
        watchThread = new Thread(this::watchLoop, "egress-config-watch");
        watchThread.setDaemon(true);
        watchThread.start();
        log.info("watching {} for changes", file);
        return this;
    }

    private Path presetsDir() {
        return file.getParent().resolve(PRESETS);
    }

    /**
     * Watches the directories of the users file, the TLS files and the parent's password file too (a
     * Kubernetes Secret mounted elsewhere swaps its {@code ..data} link the same way as a ConfigMap).
     */
    private void registerReadFileDirs() {
        if (watcher == null) {
            return;
        }
        for (Path f : readFiles.files()) {
            try {
                register(f.getParent());
            } catch (IOException e) {
                log.warn("cannot watch {}: {}; send SIGHUP after changing {}", f.getParent(), e.toString(), f);
            }
        }
    }

    private synchronized void register(Path dir) throws IOException {
        if (!watchedDirs.add(dir)) {
            return;
        }
        if (Files.isDirectory(dir)) {
            dir.register(watcher, StandardWatchEventKinds.ENTRY_CREATE, StandardWatchEventKinds.ENTRY_MODIFY,
                    StandardWatchEventKinds.ENTRY_DELETE);
        }
    }

    private void watchLoop() {
        try {
            while (true) {
                WatchKey key = watcher.take();
                boolean relevant = false;
                for (WatchEvent<?> event : key.pollEvents()) {
                    relevant |= relevant(key, event);
                }
                key.reset();
                if (relevant) {
                    changed();
                }
            }
        } catch (InterruptedException | ClosedWatchServiceException e) {
            // Closed: stop watching.
        }
    }

    private boolean relevant(WatchKey key, WatchEvent<?> event) {
        if (event.kind() == StandardWatchEventKinds.OVERFLOW) {
            return true; // events were lost: look
        }
        String name = event.context().toString();
        Set<String> read = readFiles.names().get((Path) key.watchable());
        if (read != null && read.contains(name)) {
            return true;
        }
        if (file.getParent().equals(key.watchable())) {
            if (name.equals(PRESETS) && event.kind() == StandardWatchEventKinds.ENTRY_CREATE) {
                // A presets directory made after the start is watched from now on.
                try {
                    register(presetsDir());
                } catch (IOException e) {
                    log.warn("cannot watch {}: {}", presetsDir(), e.toString());
                }
            }
            return watchedNames.contains(name) && (!name.equals(PRESETS) || usesPresets());
        }
        if (!presetsDir().equals(key.watchable())) {
            // The directory of a file read by an earlier configuration: not this one's.
            return false;
        }
        Set<String> files = presetFiles;
        return files == null || files.contains(name);
    }

    private boolean usesPresets() {
        Set<String> files = presetFiles;
        return files == null || !files.isEmpty();
    }

    /** A relevant event: check after a quiet moment, and at the latest {@link #MAX_WAIT_MILLIS} after the first. */
    private synchronized void changed() {
        long now = System.nanoTime();
        lastEvent = now;
        if (!armed) {
            armed = true;
            firstEvent = now;
            schedule(TimeUnit.MILLISECONDS.toNanos(QUIET_MILLIS));
        }
    }

    private void due() {
        synchronized (this) {
            long at = Math.min(lastEvent + TimeUnit.MILLISECONDS.toNanos(QUIET_MILLIS),
                    firstEvent + TimeUnit.MILLISECONDS.toNanos(MAX_WAIT_MILLIS));
            long wait = at - System.nanoTime();
            if (wait > 0) {
                schedule(wait);
                return;
            }
            // Events from here on arm a new check.
            armed = false;
        }
        if (!Arrays.equals(digest(), lastDigest)) {
            reload("file change");
        }
    }

    private void schedule(long nanos) {
        try {
            executor.schedule(this::due, nanos, TimeUnit.NANOSECONDS);
        } catch (RejectedExecutionException e) {
            // Closed.
        }
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
            server.status().reloadRefused(trigger, e.getMessage());
            // Remember the broken content so that it is not retried until it changes again.
            lastDigest = digest;
            presetFiles = null;
            log.error("configuration reload ({}) refused, the running configuration stays in force: {}",
                    trigger, e.getMessage());
            return false;
        } catch (RuntimeException e) {
            metrics.configReload(false);
            server.status().reloadRefused(trigger, "reload failed: " + e);
            lastDigest = digest;
            presetFiles = null;
            log.error("configuration reload ({}) failed, the running configuration stays in force", trigger, e);
            return false;
        }
        lastDigest = digest;
        presetFiles = presetFiles(next);
        List<String> restart = server.apply(next);
        // The digest taken above covered the previous files: if these differ, the next relevant
        // event reloads once more (harmless) rather than missing a change made during the load.
        readFiles = ReadFiles.of(next);
        registerReadFileDirs();
        metrics.configReload(true);
        server.status().reloadApplied(trigger, restart);
        log.info("configuration reloaded ({}) from {}: allowlist {} entries", trigger,
                file == null ? "shipped defaults" : file, next.allowlist().entries().size());
        if (!restart.isEmpty()) {
            log.warn("changed settings that take effect only after a restart: {}", String.join(", ", restart));
        }
        return true;
    }

    /**
     * A digest of the config file, the presets beside it and the other files the configuration in
     * force reads, to tell real changes from noise.
     */
    private byte[] digest() {
        if (file == null) {
            return new byte[0];
        }
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(readOrEmpty(file));
            for (Path f : readFiles.files()) {
                md.update(f.toString().getBytes(StandardCharsets.UTF_8));
                md.update(readOrEmpty(f));
            }
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

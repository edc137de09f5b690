package dev.egressproxy.config;

import com.typesafe.config.ConfigIncludeContext;
import com.typesafe.config.ConfigIncluder;
import com.typesafe.config.ConfigIncluderClasspath;
import com.typesafe.config.ConfigIncluderFile;
import com.typesafe.config.ConfigIncluderURL;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigParseable;
import java.io.File;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Notes the files a config file pulls in with HOCON {@code include} ({@code include "x.conf"},
 * {@code include file("...")}, nested includes too) while Typesafe Config's own includer reads
 * them, so that the reload watches them with the config file. Only files that exist are noted: an
 * include of a missing file (optional in HOCON) has no place to watch until a load finds it. URL
 * and classpath includes are read as usual and not noted.
 */
final class IncludeRecorder implements ConfigIncluder, ConfigIncluderFile, ConfigIncluderURL, ConfigIncluderClasspath {

    /** The extensions HOCON tries for an include without one, in its order. */
    private static final List<String> EXTENSIONS = List.of(".conf", ".json", ".properties");

    private final Set<Path> files;
    private final ConfigIncluder fallback;

    IncludeRecorder(ConfigIncluder fallback) {
        this(new LinkedHashSet<>(), fallback);
    }

    private IncludeRecorder(Set<Path> files, ConfigIncluder fallback) {
        this.files = files;
        this.fallback = fallback;
    }

    /** The included files noted so far, absolute, each once, in the order they were read. */
    List<Path> files() {
        return List.copyOf(files);
    }

    @Override
    public ConfigIncluder withFallback(ConfigIncluder next) {
        // Typesafe Config hands over its default includer here; the notes stay shared.
        return fallback == null ? new IncludeRecorder(files, next) : this;
    }

    @Override
    public ConfigObject include(ConfigIncludeContext context, String what) {
        for (String name : candidates(what)) {
            ConfigParseable parseable = context.relativeTo(name);
            if (parseable != null && parseable.origin().filename() != null) {
                note(new File(parseable.origin().filename()));
            }
        }
        return fallback.include(context, what);
    }

    @Override
    public ConfigObject includeFile(ConfigIncludeContext context, File what) {
        for (String name : candidates(what.getPath())) {
            note(new File(name));
        }
        return ((ConfigIncluderFile) fallback).includeFile(context, what);
    }

    @Override
    public ConfigObject includeURL(ConfigIncludeContext context, URL what) {
        return ((ConfigIncluderURL) fallback).includeURL(context, what);
    }

    @Override
    public ConfigObject includeResources(ConfigIncludeContext context, String what) {
        return ((ConfigIncluderClasspath) fallback).includeResources(context, what);
    }

    /** {@code what}, or without an extension the names HOCON tries for it. */
    private static List<String> candidates(String what) {
        String last = new File(what).getName();
        return last.contains(".") ? List.of(what) : EXTENSIONS.stream().map(e -> what + e).toList();
    }

    private void note(File f) {
        Path p = f.toPath().toAbsolutePath().normalize();
        if (Files.isRegularFile(p)) {
            files.add(p);
        }
    }
}

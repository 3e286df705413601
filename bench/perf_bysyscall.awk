# perf_bysyscall.awk: `perf script -F comm,tid,ip,sym,dso` of a `perf record -g` -> where the
# samples went, by what the thread was doing: in the kernel, the syscall it was in (the
# __x64_sys_NAME frame of the stack), or a page fault, or an interrupt/softirq taken outside a
# syscall; in user space, the library or binary (and, with -v syms=1, the symbol). One line per
# class, "percent samples class", largest first (the caller sorts). Used by bench/profile.sh.
function flush(    c, i) {
    if (n == 0) return
    c = ""
    for (i = n; i >= 1; i--) { # from the root: the outermost syscall frame names the syscall
        if (fr[i] ~ /^__x64_sys_/) { c = "kernel: " substr(fr[i], 11); break }
        if (fr[i] ~ /^__do_sys_/) { c = "kernel: " substr(fr[i], 10); break }
    }
    if (c == "") {
        for (i = n; i >= 1; i--) if (fr[i] ~ /^asm_exc_page_fault$/) { c = "kernel: page fault"; break }
    }
    if (c == "") {
        for (i = 1; i <= n; i++) if (dso[i] == "[kernel.kallsyms]") { c = "kernel: interrupt, softirq or other"; break }
    }
    if (c == "") {
        c = "user: " dso[1]
        if (syms) c = c " " fr[1]
    }
    count[c]++
    total++
    n = 0
}
/^[^ \t]/ { flush(); next }      # "comm tid": a new sample
/^[ \t]*$/ { flush(); next }
{
    # "\t addr sym (dso)"
    line = $0
    sub(/^[ \t]+[0-9a-f]+ /, "", line)
    d = line
    sub(/^.* \(/, "", d); sub(/\)$/, "", d)
    sub(/ \(.*$/, "", line)
    sub(/\+0x[0-9a-f]+$/, "", line)
    n++
    fr[n] = line
    k = split(d, parts, "/")
    dso[n] = parts[k]
}
END {
    flush()
    for (c in count) printf "%6.2f%% %7d  %s\n", 100 * count[c] / total, count[c], c
}

# Uninstall qwendesk on Windows: stop it, remove start at login, the venv and its PATH entry.
# Your models, conversations and settings stay unless you pass -Purge.
#
#   powershell -ExecutionPolicy Bypass -File installers\uninstall.ps1 [-Purge]
param([switch]$Purge)
$ErrorActionPreference = "Stop"

function Say($msg) { Write-Host "qwendesk: $msg" }

$venv = if ($env:QWENDESK_VENV) { $env:QWENDESK_VENV } else { Join-Path $env:LOCALAPPDATA "qwendesk-venv" }
$scripts = Join-Path $venv "Scripts"
$qwendesk = Join-Path $scripts "qwendesk.exe"
$folders = @()
if (Test-Path $qwendesk) {
    & $qwendesk autostart disable --now
    & $qwendesk shutdown 2>$null | Out-Null
    if ($LASTEXITCODE -eq 0) { Say "stopped the daemon" }
    $folders = @((& $qwendesk path home), (Split-Path -Parent (& $qwendesk path config)), (& $qwendesk path logs)) |
        Where-Object { $_ } | Sort-Object -Unique
    # The tray runs pythonw.exe from the venv, which locks it: stop it so the venv can be removed.
    Get-Process -Name pythonw, python -ErrorAction SilentlyContinue |
        Where-Object { $_.Path -and $_.Path.StartsWith($scripts, [StringComparison]::OrdinalIgnoreCase) } |
        Stop-Process -Force
    Start-Sleep -Seconds 2  # let Windows release the files
} else {
    Say "no qwendesk program found in $venv; removing what is left"
    $port = if ($env:QWENDESK_PORT) { $env:QWENDESK_PORT } else { 11470 }
    try { Invoke-RestMethod -Method Post "http://127.0.0.1:$port/api/shutdown" | Out-Null } catch { }
}

if (Test-Path $venv) { Remove-Item -Recurse -Force $venv; Say "removed $venv" }
$userPath = [Environment]::GetEnvironmentVariable("Path", "User")
if ($userPath -and (($userPath -split ';') -contains $scripts)) {
    [Environment]::SetEnvironmentVariable("Path", (($userPath -split ';') | Where-Object { $_ -and $_ -ne $scripts }) -join ';', "User")
    Say "removed $scripts from your PATH"
}

if ($Purge) {
    foreach ($dir in $folders) {
        if ($dir -eq $env:USERPROFILE -or $dir.Length -le 3) { Say "refusing to remove $dir"; continue }
        if (Test-Path $dir) { Remove-Item -Recurse -Force $dir; Say "removed $dir" }
    }
    Say "models you keep in other folders (models_dirs) were not touched"
} elseif ($folders) {
    Say "kept your models, conversations and settings (run with -Purge to remove them):"
    $folders | ForEach-Object { Write-Host "  $_" }
}
Say "uninstalled"

"""Image quality metrics as SR papers compute them: PSNR, SSIM, SR3 consistency."""
